package io.isptf.core

/** Element types at a model boundary. */
enum class DType(
    val bytes: Int,
    val min: Int,
    val max: Int,
) {
    FLOAT32(4, 0, 0),
    INT8(1, -128, 127),
    UINT8(1, 0, 255),
    ;

    companion object {
        fun of(name: String): DType =
            when (name.lowercase()) {
                "float32" -> FLOAT32
                "int8" -> INT8
                "uint8" -> UINT8
                else -> throw ModelMismatchException("tensor dtype $name is not float32, int8 or uint8")
            }
    }
}

/**
 * One model input or output: shape (NHWC), element type, and data in [floats] (FLOAT32) or
 * [ints] (INT8/UINT8 values, one per element). [scale]/[zeroPoint] describe a quantised tensor
 * (0 scale: not quantised).
 */
class Tensor(
    val shape: IntArray,
    val dtype: DType,
    val floats: FloatArray? = null,
    val ints: IntArray? = null,
    val scale: Double = 0.0,
    val zeroPoint: Int = 0,
) {
    val size: Int get() = shape.fold(1) { a, b -> a * b }

    init {
        val n = size
        when (dtype) {
            DType.FLOAT32 -> require(floats != null && floats.size == n) { "float32 tensor ${shape.contentToString()} needs $n floats" }
            else -> require(ints != null && ints.size == n) { "$dtype tensor ${shape.contentToString()} needs $n values" }
        }
    }

    /** The value as float32 (`isp_tf.runtime.dequantize`: `(q - zero_point) * scale`). */
    fun toFloats(): FloatArray {
        floats?.let { return it }
        val q = ints!!
        if (scale == 0.0) return FloatArray(q.size) { q[it].toFloat() }
        val s = scale.toFloat()
        return FloatArray(q.size) { (q[it].toFloat() - zeroPoint) * s }
    }

    companion object {
        /** `values` as a tensor of `dtype` (`isp_tf.runtime.quantize`: `clip(rint(x / scale + zero_point))`). */
        fun quantize(
            shape: IntArray,
            values: FloatArray,
            dtype: DType,
            scale: Double = 0.0,
            zeroPoint: Int = 0,
        ): Tensor {
            if (dtype == DType.FLOAT32) return Tensor(shape, dtype, floats = values)
            val s = scale.toFloat()
            val q =
                IntArray(values.size) {
                    val v = if (scale == 0.0) values[it] else values[it] / s + zeroPoint
                    Math.rint(v.toDouble()).coerceIn(dtype.min.toDouble(), dtype.max.toDouble()).toInt()
                }
            return Tensor(shape, dtype, ints = q, scale = scale, zeroPoint = zeroPoint)
        }
    }
}

/**
 * What the core needs from a runtime: run model number `model` (a pass of a tile manifest, 0 for a
 * whole-frame model) on `inputs` (in the model's input order, already quantised as its inputs
 * take them) and return every output in the model's output order, with their quantisation.
 * The Android layer implements it with LiteRT's `Interpreter`; the JVM tests with a pipe to Python.
 */
fun interface ModelRunner {
    fun run(
        model: Int,
        inputs: List<Tensor>,
    ): List<Tensor>
}
