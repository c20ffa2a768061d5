package io.isptf.core

import kotlin.math.pow
import kotlin.math.roundToInt

/** Images to display pixels: sRGB floats to ARGB ints, EXIF orientation, a simple classical render. */
object Render {
    /** (h, w, 3) sRGB in [0, 1] (clipped, x 255, rounded) to opaque ARGB ints, row-major. */
    fun toArgb(img: FloatImage): IntArray {
        require(img.channels >= 3) { "an RGB image needs 3 channels, got ${img.channels}" }
        val c = img.channels
        return IntArray(img.height * img.width) { i ->
            fun ch(k: Int): Int = (img.data[i * c + k].coerceIn(0f, 1f) * 255f).roundToInt()
            (0xFF shl 24) or (ch(0) shl 16) or (ch(1) shl 8) or ch(2)
        }
    }

    /**
     * Sensor order to display order for an EXIF orientation code, as `isp_tf.raw.apply_orientation`.
     * Returns the pixels and the new (width, height).
     */
    fun orient(
        pixels: IntArray,
        width: Int,
        height: Int,
        orientation: Int,
    ): Triple<IntArray, Int, Int> {
        val swap = orientation in 5..8
        val ow = if (swap) height else width
        val oh = if (swap) width else height
        val out = IntArray(pixels.size)
        for (i in 0 until oh) {
            for (j in 0 until ow) {
                val (sy, sx) =
                    when (orientation) {
                        1 -> i to j
                        2 -> i to width - 1 - j
                        3 -> height - 1 - i to width - 1 - j
                        4 -> height - 1 - i to j
                        5 -> j to i
                        6 -> height - 1 - j to i
                        7 -> height - 1 - j to width - 1 - i
                        8 -> j to width - 1 - i
                        else -> throw IllegalArgumentException("orientation must be an EXIF code 1..8, got $orientation")
                    }
                out[i * ow + j] = pixels[sy * width + sx]
            }
        }
        return Triple(out, ow, oh)
    }

    /**
     * A quick classical render at packed resolution (not `isp_tf.raw.render_classical`, which
     * demosaics at full size): white balance from AsShotNeutral, camera -> sRGB from the ColorMatrix
     * nearest D65 (identity without one), sRGB transfer curve. For the app's comparison switch.
     */
    fun classical(
        packed: FloatImage,
        raw: DngImage,
    ): FloatImage {
        val wb = raw.wbGains
        val camToSrgb = camToSrgb(raw.colorMatrixNearestD65)
        val out = FloatImage(packed.height, packed.width, 3)
        for (i in 0 until packed.height * packed.width) {
            val r = packed.data[4 * i] * wb[0]
            val g = (packed.data[4 * i + 1] + packed.data[4 * i + 2]) * 0.5 * wb[1]
            val b = packed.data[4 * i + 3] * wb[2]
            for (k in 0 until 3) {
                val v = (camToSrgb[3 * k] * r + camToSrgb[3 * k + 1] * g + camToSrgb[3 * k + 2] * b).coerceIn(0.0, 1.0)
                out.data[3 * i + k] = (if (v <= 0.0031308) 12.92 * v else 1.055 * v.pow(1 / 2.4) - 0.055).toFloat()
            }
        }
        return out
    }

    private val XYZ_TO_SRGB =
        doubleArrayOf(3.2404542, -1.5371385, -0.4985314, -0.9692660, 1.8760108, 0.0415560, 0.0556434, -0.2040259, 1.0572252)
    private val SRGB_TO_XYZ =
        doubleArrayOf(0.4124564, 0.3575761, 0.1804375, 0.2126729, 0.7151522, 0.0721750, 0.0193339, 0.1191920, 0.9503041)

    /** White-balanced camera RGB -> linear sRGB from a DNG ColorMatrix (XYZ -> camera), rows summing to 1. */
    fun camToSrgb(colorMatrix: DoubleArray?): DoubleArray {
        if (colorMatrix == null) return doubleArrayOf(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        val srgbToCam = mul(colorMatrix, SRGB_TO_XYZ)
        for (r in 0 until 3) { // normalise so that sRGB white maps to camera white (1, 1, 1)
            val s = srgbToCam[3 * r] + srgbToCam[3 * r + 1] + srgbToCam[3 * r + 2]
            for (c in 0 until 3) srgbToCam[3 * r + c] /= s
        }
        return inv(srgbToCam)
    }

    private fun mul(
        a: DoubleArray,
        b: DoubleArray,
    ) = DoubleArray(9) { i -> (0 until 3).sumOf { k -> a[i / 3 * 3 + k] * b[k * 3 + i % 3] } }

    private fun inv(m: DoubleArray): DoubleArray {
        val (a, b, c, d, e) = m
        val f = m[5]
        val g = m[6]
        val h = m[7]
        val k = m[8]
        val det = a * (e * k - f * h) - b * (d * k - f * g) + c * (d * h - e * g)
        require(kotlin.math.abs(det) > 1e-12) { "colour matrix is singular" }
        return doubleArrayOf(
            (e * k - f * h) / det,
            (c * h - b * k) / det,
            (b * f - c * e) / det,
            (f * g - d * k) / det,
            (a * k - c * g) / det,
            (c * d - a * f) / det,
            (d * h - e * g) / det,
            (b * g - a * h) / det,
            (a * e - b * d) / det,
        )
    }
}
