package io.isptf.core

import java.io.BufferedInputStream
import java.io.BufferedOutputStream
import java.io.DataInputStream
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * A [ModelRunner] served by another process over its stdin/stdout (the JVM tests use
 * `tests/android/litert_server.py`, LiteRT in Python). All numbers little-endian.
 *
 * Request:  i32 model (-1: quit), i32 count, then per tensor: i32 dtype (0 float32, 1 int8,
 *           2 uint8), i32 rank, rank x i32 dims, f64 scale, i32 zero point, the elements
 *           (float32 or one byte each).
 * Response: i32 status (0 ok; else i32 length + UTF-8 message), i32 count, tensors as above.
 */
class PipeModelRunner(
    command: List<String>,
    workDir: File? = null,
) : ModelRunner,
    AutoCloseable {
    private val process: Process =
        ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.INHERIT).apply { if (workDir != null) directory(workDir) }.start()
    private val out = BufferedOutputStream(process.outputStream, 1 shl 20)
    private val inp = DataInputStream(BufferedInputStream(process.inputStream, 1 shl 20))

    private fun i32(v: Int) {
        out.write(
            ByteBuffer
                .allocate(4)
                .order(ByteOrder.LITTLE_ENDIAN)
                .putInt(v)
                .array(),
        )
    }

    private fun readBytes(n: Int): ByteBuffer {
        val b = ByteArray(n)
        inp.readFully(b)
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN)
    }

    private fun readI32(): Int = readBytes(4).int

    override fun run(
        model: Int,
        inputs: List<Tensor>,
    ): List<Tensor> {
        i32(model)
        i32(inputs.size)
        for (t in inputs) {
            i32(t.dtype.ordinal)
            i32(t.shape.size)
            t.shape.forEach { i32(it) }
            out.write(
                ByteBuffer
                    .allocate(12)
                    .order(ByteOrder.LITTLE_ENDIAN)
                    .putDouble(t.scale)
                    .putInt(t.zeroPoint)
                    .array(),
            )
            if (t.dtype == DType.FLOAT32) {
                val bb = ByteBuffer.allocate(4 * t.size).order(ByteOrder.LITTLE_ENDIAN)
                bb.asFloatBuffer().put(t.floats!!)
                out.write(bb.array())
            } else {
                out.write(ByteArray(t.size) { t.ints!![it].toByte() })
            }
        }
        out.flush()
        val status = readI32()
        if (status != 0) {
            val msg = String(readBytes(readI32()).array(), Charsets.UTF_8)
            throw ModelMismatchException("the model server refused the call: $msg")
        }
        return List(readI32()) {
            val dtype = DType.entries[readI32()]
            val shape = IntArray(readI32()) { readI32() }
            val q = readBytes(12)
            val scale = q.double
            val zero = q.int
            val n = shape.fold(1) { a, b -> a * b }
            if (dtype == DType.FLOAT32) {
                val f = FloatArray(n)
                readBytes(4 * n).asFloatBuffer().get(f)
                Tensor(shape, dtype, floats = f)
            } else {
                val b = readBytes(n).array()
                val ints = IntArray(n) { if (dtype == DType.INT8) b[it].toInt() else b[it].toInt() and 0xFF }
                Tensor(shape, dtype, ints = ints, scale = scale, zeroPoint = zero)
            }
        }
    }

    override fun close() {
        runCatching {
            i32(-1)
            i32(0)
            out.flush()
            out.close()
        }
        process.waitFor()
    }
}
