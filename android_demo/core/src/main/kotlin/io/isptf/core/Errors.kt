package io.isptf.core

/** Every error the core raises: one sealed family, so a caller can `when` over them. */
sealed class IspCoreException(
    message: String,
) : Exception(message)

/** Not a TIFF/DNG at all, or a structure that cannot be followed (bad offsets, loops). */
class NotTiffException(
    source: String,
    reason: String,
) : IspCoreException("$source: not a readable TIFF/DNG ($reason)")

/** A DNG whose raw IFD is compressed (lossless JPEG, lossy JPEG, JPEG XL, deflate...). */
class CompressedDngException(
    source: String,
    val compression: Int,
) : IspCoreException(
        "$source: the raw image is compressed (TIFF Compression $compression, " +
            "${compressionName(compression)}); only uncompressed DNGs are read here",
    )

/** A raw IFD that holds no 2x2 Bayer mosaic (LinearRaw, X-Trans, other CFA layouts, monochrome). */
class NotBayerException(
    source: String,
    reason: String,
) : IspCoreException("$source: not a 2x2 Bayer mosaic ($reason)")

/** Sample layouts this reader does not handle (bit depths, several samples per pixel...). */
class UnsupportedLayoutException(
    source: String,
    reason: String,
) : IspCoreException("$source: unsupported raw layout ($reason)")

/** Pixel data or metadata that is inconsistent (truncated strips, white level at or below black). */
class CorruptRawException(
    source: String,
    reason: String,
) : IspCoreException("$source: $reason")

/** A model and a manifest/export JSON that do not describe the same graph. */
class ModelMismatchException(
    reason: String,
) : IspCoreException("model and manifest do not match: $reason")

/** A manifest or export JSON that is not what the core can read. */
class ManifestException(
    reason: String,
) : IspCoreException("bad manifest: $reason")

/** Malformed JSON text. */
class JsonException(
    reason: String,
) : IspCoreException("bad JSON: $reason")

/** An input of the wrong shape or size (frame too small for a tile, wrong channel count). */
class InputShapeException(
    reason: String,
) : IspCoreException(reason)

internal fun compressionName(code: Int): String =
    when (code) {
        7 -> "lossless JPEG"
        8, 32946 -> "deflate"
        34892 -> "lossy JPEG"
        52546 -> "JPEG XL"
        else -> "not uncompressed"
    }
