package io.isptf.core

/** A row-major (height, width, channels) float32 image: packed Bayer (4 channels) or RGB (3). */
class FloatImage(
    val height: Int,
    val width: Int,
    val channels: Int,
    val data: FloatArray = FloatArray(height * width * channels),
) {
    init {
        require(data.size == height * width * channels) { "data of ${data.size} floats for ${height}x${width}x$channels" }
    }

    operator fun get(
        y: Int,
        x: Int,
        c: Int,
    ): Float = data[(y * width + x) * channels + c]
}

/** Bayer packing exactly as `isp_tf.raw.pack_bayer(RawImage)` (see [pack]). */
object Bayer {
    /** `(dy, dx)`: where the first red pixel sits in a 2x2 block (`isp_tf.raw.rggb_offset`). */
    fun rggbOffset(pattern: String): IntArray =
        when (pattern.uppercase()) {
            "RGGB" -> intArrayOf(0, 0)
            "GRBG" -> intArrayOf(0, 1)
            "GBRG" -> intArrayOf(1, 0)
            "BGGR" -> intArrayOf(1, 1)
            else -> throw NotBayerException("<mosaic>", "CFA pattern $pattern is not one of RGGB, GRBG, GBRG, BGGR")
        }

    /** `(y0, y1, x0, x1)`: the mosaic window [pack] keeps (`isp_tf.raw.rggb_crop`). */
    fun rggbCrop(
        height: Int,
        width: Int,
        pattern: String,
    ): IntArray {
        val (dy, dx) = rggbOffset(pattern)
        val h = (height - dy) / 2 * 2
        val w = (width - dx) / 2 * 2
        return intArrayOf(dy, dy + h, dx, dx + w)
    }

    /**
     * `(H/2, W/2, 4)` channels `[R, G1, G2, B]` in [0, 1]: per-site `(v - black) * (1 / (white - black))`
     * in float32 (the factor computed in float64, as numpy does), clipped, after cropping the mosaic to
     * start on its first red pixel and trimming it to even sides.
     */
    fun pack(raw: DngImage): FloatImage {
        val (y0, y1, x0, x1) = rggbCrop(raw.height, raw.width, raw.cfaPattern)
        val h = (y1 - y0) / 2
        val w = (x1 - x0) / 2
        if (h <= 0 || w <= 0) throw InputShapeException("mosaic of ${raw.height}x${raw.width} is too small to pack")
        val black = raw.blackLevel
        val white = raw.whiteLevel
        val scale = FloatArray(4) { (1.0 / (white - black[it].toDouble())).toFloat() }
        val out = FloatImage(h, w, 4)
        val d = out.data
        val src = raw.mosaic
        val stride = raw.width
        for (i in 0 until h) {
            for (c in 0 until 4) {
                val y = y0 + 2 * i + c / 2
                val site0 = 2 * (y % 2)
                val row = y * stride
                for (j in 0 until w) {
                    val x = x0 + 2 * j + c % 2
                    val site = site0 + x % 2
                    var v = (src[row + x].toFloat() - black[site]) * scale[site]
                    if (v < 0f) {
                        v = 0f
                    } else if (v > 1f) {
                        v = 1f
                    }
                    d[(i * w + j) * 4 + c] = v
                }
            }
        }
        return out
    }
}
