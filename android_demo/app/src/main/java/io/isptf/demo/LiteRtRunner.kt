package io.isptf.demo

import io.isptf.core.DType
import io.isptf.core.ModelRunner
import io.isptf.core.TileManifest
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Delegate
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate
import java.io.Closeable
import java.nio.ByteBuffer
import java.nio.ByteOrder
import io.isptf.core.Tensor as CoreTensor

/** Where the Interpreter runs: the choices of the app's backend spinner. */
enum class Backend(
    val label: String,
) {
    NNAPI("NNAPI (NnApiDelegate)"),
    GPU("GPU (GpuDelegate)"),
    CPU("CPU (XNNPACK)"),
}

/**
 * The core's [ModelRunner] on LiteRT: one [Interpreter] per model (the segment models of a tile
 * manifest in `TileManifest.segmentModels` order, or its pass models, or the one whole-frame model),
 * each with its own delegate. Inputs are resized only when their shape changes (the executors sort a
 * row's tiles by box size, so a frame needs few resizes; every resize re-plans the delegate, which is
 * slow on GPU/NNAPI).
 */
class LiteRtRunner(
    models: List<ByteBuffer>,
    backend: Backend,
    threads: Int = 4,
) : ModelRunner,
    Closeable {
    private val delegates = ArrayList<Delegate>()
    private val interpreters: List<Interpreter> =
        models.map { model ->
            val options = Interpreter.Options().setNumThreads(threads)
            when (backend) {
                Backend.NNAPI -> options.addDelegate(NnApiDelegate(NnApiDelegate.Options().setAllowFp16(true)).also { delegates.add(it) })
                Backend.GPU -> options.addDelegate(GpuDelegate().also { delegates.add(it) })
                Backend.CPU -> options.setUseXNNPACK(true)
            }
            Interpreter(model, options)
        }

    /** Input dtypes and output count of model `k` (for [TileManifest.checkSegmentModel] / [TileManifest.checkPassModel]). */
    fun describe(k: Int): Pair<List<DType>, Int> {
        val it = interpreters[k]
        return List(it.inputTensorCount) { i -> dtypeOf(it.getInputTensor(i).dataType()) } to it.outputTensorCount
    }

    override fun run(
        model: Int,
        inputs: List<CoreTensor>,
    ): List<CoreTensor> {
        val it = interpreters[model]
        var resized = false
        inputs.forEachIndexed { k, t ->
            if (!it.getInputTensor(k).shape().contentEquals(t.shape)) {
                it.resizeInput(k, t.shape)
                resized = true
            }
        }
        if (resized) it.allocateTensors()
        val inBuffers = inputs.map { toBuffer(it) }.toTypedArray<Any>()
        val outBuffers =
            (0 until it.outputTensorCount).associateWith { k ->
                ByteBuffer.allocateDirect(it.getOutputTensor(k).numBytes()).order(ByteOrder.nativeOrder())
            }
        it.runForMultipleInputsOutputs(inBuffers, outBuffers)
        return (0 until it.outputTensorCount).map { k ->
            val t = it.getOutputTensor(k)
            val buf = outBuffers.getValue(k).also { b -> b.rewind() }
            val dtype = dtypeOf(t.dataType())
            val shape = t.shape()
            val n = shape.fold(1) { a, b -> a * b }
            if (dtype == DType.FLOAT32) {
                CoreTensor(shape, dtype, floats = FloatArray(n).also { f -> buf.asFloatBuffer().get(f) })
            } else {
                val q = t.quantizationParams()
                val ints = IntArray(n) { i -> if (dtype == DType.INT8) buf.get(i).toInt() else buf.get(i).toInt() and 0xFF }
                CoreTensor(shape, dtype, ints = ints, scale = q.scale.toDouble(), zeroPoint = q.zeroPoint)
            }
        }
    }

    private fun toBuffer(t: CoreTensor): ByteBuffer {
        val buf = ByteBuffer.allocateDirect(t.size * t.dtype.bytes).order(ByteOrder.nativeOrder())
        if (t.dtype == DType.FLOAT32) {
            buf.asFloatBuffer().put(t.floats!!)
        } else {
            t.ints!!.forEach { buf.put(it.toByte()) }
        }
        buf.rewind()
        return buf
    }

    private fun dtypeOf(d: DataType): DType =
        when (d) {
            DataType.FLOAT32 -> DType.FLOAT32
            DataType.INT8 -> DType.INT8
            DataType.UINT8 -> DType.UINT8
            else -> throw io.isptf.core.ModelMismatchException("tensor type $d is not float32, int8 or uint8")
        }

    override fun close() {
        interpreters.forEach { it.close() }
        delegates.forEach { (it as? AutoCloseable)?.close() }
    }
}
