package io.isptf.core

/** The EXIF values the models and the UI use; null = not in the file. */
data class ExifInfo(
    val iso: Double? = null,
    val exposureTime: Double? = null,
    val fNumber: Double? = null,
    val focalLength: Double? = null,
)

/**
 * The full-resolution Bayer mosaic of a DNG and its metadata (what `isp_tf.raw.read_raw` reads).
 *
 * `mosaic` is row-major `height * width` sensor values (after the ActiveArea crop);
 * `blackLevel` holds one value per 2x2 site *by position* (index `2 * (y % 2) + x % 2`),
 * like `RawImage.black_level`; `cfaPattern` is one of RGGB, GRBG, GBRG, BGGR.
 */
class DngImage(
    val width: Int,
    val height: Int,
    val mosaic: IntArray,
    val cfaPattern: String,
    val blackLevel: FloatArray,
    val whiteLevel: Double,
    val asShotNeutral: DoubleArray?,
    val colorMatrix1: DoubleArray?,
    val colorMatrix2: DoubleArray?,
    val calibrationIlluminant1: Int?,
    val calibrationIlluminant2: Int?,
    val orientation: Int,
    val exif: ExifInfo,
    val bitsPerSample: Int,
    /** Where the raw IFD was found, e.g. `ifd0` or `ifd0.sub0`. */
    val rawIfd: String,
) {
    /** White-balance gains (R, G, B) normalised to G = 1 from AsShotNeutral (1, 1, 1 without one). */
    val wbGains: DoubleArray
        get() {
            val n = asShotNeutral
            if (n == null || n.size != 3 || n.any { it <= 0.0 }) return doubleArrayOf(1.0, 1.0, 1.0)
            return doubleArrayOf(n[1] / n[0], 1.0, n[1] / n[2])
        }

    /** The colour matrix calibrated nearest to D65 (illuminant 21), like `read_raw`. */
    val colorMatrixNearestD65: DoubleArray?
        get() {
            val m1 = colorMatrix1
            val m2 = colorMatrix2 ?: return m1
            if (m1 == null) return m2
            val d1 = kelvin(calibrationIlluminant1)
            val d2 = kelvin(calibrationIlluminant2)
            return if (Math.abs(d2 - 6504.0) < Math.abs(d1 - 6504.0)) m2 else m1
        }

    private fun kelvin(code: Int?): Double =
        when (code) {
            17, 1 -> 2856.0
            21 -> 6504.0
            20 -> 5503.0
            22 -> 7504.0
            23 -> 5003.0
            else -> 5000.0
        }
}

/** Reads uncompressed Bayer DNGs (see the class docs of [TiffFile] and [DngImage]). */
object DngReader {
    private const val CFA = 32803
    private const val LINEAR_RAW = 34892
    private val CODES = mapOf(0 to 'R', 1 to 'G', 2 to 'B')
    val PATTERNS = listOf("RGGB", "GRBG", "GBRG", "BGGR")

    fun read(
        bytes: ByteArray,
        source: String = "<bytes>",
    ): DngImage {
        val tiff = TiffFile(bytes, source)
        val ifd0 = tiff.ifds[0]
        val candidates = tiff.ifds.filter { it.int(254, 0) and 1 == 0 } // full resolution, not a preview
        val raw =
            candidates.filter { it.int(262, 0) == CFA }.maxByOrNull { it.int(256, 0).toLong() * it.int(257, 0) }
                ?: run {
                    if (candidates.any { it.int(262, 0) == LINEAR_RAW }) {
                        throw NotBayerException(source, "LinearRaw DNG: the pixels are already demosaiced RGB")
                    }
                    throw NotBayerException(source, "no full-resolution CFA image (PhotometricInterpretation 32803) in the file")
                }
        val compression = raw.int(259, 1)
        if (compression != 1) throw CompressedDngException(source, compression)
        val spp = raw.int(277, 1)
        if (spp != 1) throw UnsupportedLayoutException(source, "$spp samples per pixel in the CFA image")
        val width = raw.int(256, 0)
        val height = raw.int(257, 0)
        if (width <= 0 || height <= 0) throw CorruptRawException(source, "raw image of ${width}x$height pixels")
        val bits = raw.int(258, 1)
        if (bits !in 1..16) throw UnsupportedLayoutException(source, "$bits bits per sample")
        val fmt = raw.int(339, 1)
        if (fmt != 1) throw UnsupportedLayoutException(source, "SampleFormat $fmt (only unsigned integers are read)")
        val full = readSamples(tiff, raw, width, height, bits, source)

        // CFA pattern: a 2x2 repeat of R/G/B codes
        val dim = raw[33421]?.ints() ?: intArrayOf(2, 2)
        val codes = raw[33422]?.ints() ?: throw NotBayerException(source, "CFA image without a CFAPattern tag")
        if (dim.size != 2 || dim[0] != 2 || dim[1] != 2 || codes.size != 4) {
            throw NotBayerException(source, "CFA repeat pattern ${dim.joinToString("x")}, only 2x2 Bayer patterns are read")
        }
        val planes = raw[50710]?.ints() ?: intArrayOf(0, 1, 2)
        val names =
            codes.map { c ->
                planes.getOrNull(c)?.let { CODES[it] }
                    ?: throw NotBayerException(source, "CFA colour code $c is not R, G or B")
            }
        val pattern = names.joinToString("")

        // ActiveArea: top, left, bottom, right; the CFA pattern and black levels repeat from its origin
        val area = raw[50829]?.ints()
        val (top, left, bottom, right) = area?.takeIf { it.size == 4 } ?: intArrayOf(0, 0, height, width)
        if (top < 0 || left < 0 || bottom > height || right > width || bottom <= top || right <= left) {
            throw CorruptRawException(source, "ActiveArea ${area?.joinToString()} outside the ${width}x$height image")
        }
        val w = right - left
        val h = bottom - top
        val mosaic = if (area == null) full else IntArray(w * h) { i -> full[(top + i / w) * width + left + i % w] }
        if (pattern !in PATTERNS) throw NotBayerException(source, "CFA pattern $pattern is not one of ${PATTERNS.joinToString()}")

        val black = blackLevels(raw, source)
        val white = raw[50717]?.first() ?: ((1 shl bits) - 1).toDouble()
        if (black.any { white <= it }) {
            throw CorruptRawException(
                source,
                "white level $white is not above the black level ${black.toList()}",
            )
        }

        fun tag(t: Int): TiffEntry? = ifd0[t] ?: raw[t]
        val exifIfd = tiff.exif

        fun exifValue(t: Int): Double? = (exifIfd?.get(t) ?: ifd0[t])?.first()?.takeIf { it.isFinite() && it > 0 }
        val orientation = ifd0.int(274, 1).takeIf { it in 1..8 } ?: 1
        return DngImage(
            width = w,
            height = h,
            mosaic = mosaic,
            cfaPattern = pattern,
            blackLevel = black,
            whiteLevel = white,
            asShotNeutral = tag(50728)?.doubles(),
            colorMatrix1 = tag(50721)?.doubles()?.takeIf { it.size == 9 },
            colorMatrix2 = tag(50722)?.doubles()?.takeIf { it.size == 9 },
            calibrationIlluminant1 = tag(50778)?.first()?.toInt(),
            calibrationIlluminant2 = tag(50779)?.first()?.toInt(),
            orientation = orientation,
            exif = ExifInfo(exifValue(34855), exifValue(33434), exifValue(33437), exifValue(37386)),
            bitsPerSample = bits,
            rawIfd = raw.path,
        )
    }

    /** Per-site black level (2x2, by position) from BlackLevelRepeatDim + BlackLevel, as float32. */
    private fun blackLevels(
        raw: TiffIfd,
        source: String,
    ): FloatArray {
        val values = raw[50714]?.doubles() ?: return FloatArray(4)
        val rep = raw[50713]?.ints() ?: intArrayOf(1, 1)
        val ry = rep.getOrElse(0) { 1 }
        val rx = rep.getOrElse(1) { 1 }
        if (ry < 1 || rx < 1 ||
            values.size < ry * rx
        ) {
            throw CorruptRawException(source, "BlackLevel has ${values.size} values for a ${ry}x$rx repeat")
        }
        if ((ry > 2 || rx > 2) && (2 % ry != 0 || 2 % rx != 0)) {
            throw UnsupportedLayoutException(source, "BlackLevelRepeatDim ${ry}x$rx does not tile a 2x2 Bayer block")
        }
        return FloatArray(4) { i -> values[(i / 2 % ry) * rx + (i % 2 % rx)].toFloat() }
    }

    /** Every sample of the IFD's image (strips or tiles), 8/16-bit or bit-packed (MSB first). */
    private fun readSamples(
        tiff: TiffFile,
        ifd: TiffIfd,
        width: Int,
        height: Int,
        bits: Int,
        source: String,
    ): IntArray {
        val out = IntArray(width * height)
        val tiled = ifd[324] != null || ifd[322] != null
        if (tiled) {
            val tw = ifd.int(322, 0)
            val th = ifd.int(323, 0)
            val offsets = ifd[324]?.longs() ?: throw CorruptRawException(source, "tiled image without TileOffsets")
            val counts = ifd[325]?.longs()
            if (tw <= 0 || th <= 0) throw CorruptRawException(source, "tiles of ${tw}x$th")
            val across = (width + tw - 1) / tw
            val down = (height + th - 1) / th
            if (offsets.size < across * down) throw CorruptRawException(source, "${offsets.size} tile offsets for $across x $down tiles")
            for (t in 0 until across * down) {
                val x0 = t % across * tw
                val y0 = t / across * th
                decode(tiff, offsets[t], counts?.getOrNull(t), tw, th, bits, source) { yy, xx, v ->
                    val y = y0 + yy
                    val x = x0 + xx
                    if (y < height && x < width) out[y * width + x] = v
                }
            }
        } else {
            val offsets = ifd[273]?.longs() ?: throw CorruptRawException(source, "raw image without StripOffsets")
            val counts = ifd[279]?.longs()
            val rows = ifd.int(278, height).coerceIn(1, height)
            val strips = (height + rows - 1) / rows
            if (offsets.size < strips) throw CorruptRawException(source, "${offsets.size} strip offsets for $strips strips")
            for (s in 0 until strips) {
                val y0 = s * rows
                val n = minOf(rows, height - y0)
                decode(tiff, offsets[s], counts?.getOrNull(s), width, n, bits, source) { yy, xx, v -> out[(y0 + yy) * width + xx] = v }
            }
        }
        return out
    }

    private inline fun decode(
        tiff: TiffFile,
        offset: Long,
        count: Long?,
        w: Int,
        h: Int,
        bits: Int,
        source: String,
        put: (Int, Int, Int) -> Unit,
    ) {
        val rowBytes = (w.toLong() * bits + 7) / 8
        val need = rowBytes * h
        val b = tiff.bytes
        if (offset < 0 || offset + need > b.size || (count != null && count < need)) {
            throw CorruptRawException(source, "pixel data is truncated (needs $need bytes at offset $offset, the file has ${b.size})")
        }
        val base = offset.toInt()
        when (bits) {
            8 -> {
                for (y in 0 until h) for (x in 0 until w) put(y, x, b[base + y * rowBytes.toInt() + x].toInt() and 0xFF)
            }

            16 -> {
                for (y in 0 until h) {
                    val row = base + y * rowBytes.toInt()
                    for (x in 0 until w) {
                        val lo = b[row + 2 * x].toInt() and 0xFF
                        val hi = b[row + 2 * x + 1].toInt() and 0xFF
                        put(y, x, if (tiff.littleEndian) lo or (hi shl 8) else (lo shl 8) or hi)
                    }
                }
            }

            else -> {
                for (y in 0 until h) {
                    var bit = (base + y * rowBytes) * 8
                    for (x in 0 until w) {
                        var v = 0
                        for (k in 0 until bits) {
                            val byte = b[(bit ushr 3).toInt()].toInt() and 0xFF
                            v = (v shl 1) or ((byte ushr (7 - (bit and 7L).toInt())) and 1)
                            bit++
                        }
                        put(y, x, v)
                    }
                }
            }
        }
    }
}
