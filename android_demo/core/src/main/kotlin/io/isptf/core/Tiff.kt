package io.isptf.core

/** One TIFF directory entry: its values are decoded on demand with the file's byte order. */
class TiffEntry internal constructor(
    private val file: TiffFile,
    val tag: Int,
    val type: Int,
    val count: Long,
    /** Where the values start in the file (inside the entry when they fit in 4 bytes). */
    val dataOffset: Long,
) {
    private fun elem(i: Int): Double {
        val size = TiffFile.typeSize(type)
        val at = dataOffset + i.toLong() * size
        return when (type) {
            1, 2, 7 -> file.u8(at).toDouble()
            6 -> file.u8(at).toByte().toDouble()
            3 -> file.u16(at).toDouble()
            8 -> file.u16(at).toShort().toDouble()
            4, 13 -> file.u32(at).toDouble()
            9 -> file.u32(at).toInt().toDouble()
            5 -> file.u32(at).toDouble() / file.u32(at + 4).toDouble()
            10 -> file.u32(at).toInt().toDouble() / file.u32(at + 4).toInt().toDouble()
            11 -> Float.fromBits(file.u32(at).toInt()).toDouble()
            12 -> Double.fromBits(file.u64(at))
            else -> throw NotTiffException(file.source, "tag $tag has unknown TIFF type $type")
        }
    }

    fun doubles(): DoubleArray = DoubleArray(count.toInt()) { elem(it) }

    fun longs(): LongArray = LongArray(count.toInt()) { elem(it).toLong() }

    fun ints(): IntArray = IntArray(count.toInt()) { elem(it).toInt() }

    fun first(): Double = elem(0)

    fun bytes(): ByteArray = ByteArray(count.toInt()) { file.u8(dataOffset + it).toByte() }

    fun string(): String = String(bytes(), Charsets.ISO_8859_1).trimEnd('\u0000').trim()
}

/** One image file directory. */
class TiffIfd internal constructor(
    val offset: Long,
    val entries: Map<Int, TiffEntry>,
    /** `"ifd0"`, `"ifd1"`, `"ifd0.sub0"`, `"exif"`: where it was found. */
    val path: String,
) {
    operator fun get(tag: Int): TiffEntry? = entries[tag]

    fun int(
        tag: Int,
        default: Int,
    ): Int = entries[tag]?.first()?.toInt() ?: default
}

/**
 * A TIFF (or DNG) file held in memory: both byte orders, the IFD chain, SubIFDs
 * (tag 330) and the EXIF IFD (34665). Offsets are checked, loops refused.
 */
class TiffFile(
    val bytes: ByteArray,
    val source: String = "<bytes>",
) {
    val littleEndian: Boolean
    val ifds: List<TiffIfd>

    /** IFD0's EXIF sub-IFD, when there is one. */
    val exif: TiffIfd?

    init {
        if (bytes.size < 8) throw NotTiffException(source, "file of ${bytes.size} bytes")
        littleEndian =
            when {
                bytes[0] == 'I'.code.toByte() && bytes[1] == 'I'.code.toByte() -> true
                bytes[0] == 'M'.code.toByte() && bytes[1] == 'M'.code.toByte() -> false
                else -> throw NotTiffException(source, "no II/MM byte-order mark")
            }
        if (u16(2) != 42) throw NotTiffException(source, "TIFF magic ${u16(2)}, not 42 (BigTIFF is not read)")
        val found = ArrayList<TiffIfd>()
        val seen = HashSet<Long>()
        var next = u32(4)
        var k = 0
        while (next != 0L) {
            val ifd = readIfd(next, "ifd$k", seen)
            found.add(ifd)
            addSubIfds(ifd, found, seen)
            next = nextOf(next)
            k++
        }
        if (found.isEmpty()) throw NotTiffException(source, "no IFD")
        ifds = found
        exif = found[0][34665]?.let { readIfd(it.first().toLong(), "exif", seen) }
    }

    private fun addSubIfds(
        ifd: TiffIfd,
        into: MutableList<TiffIfd>,
        seen: MutableSet<Long>,
    ) {
        val subs = ifd[330] ?: return
        subs.longs().forEachIndexed { i, off ->
            val sub = readIfd(off, "${ifd.path}.sub$i", seen)
            into.add(sub)
            addSubIfds(sub, into, seen)
        }
    }

    private fun nextOf(offset: Long): Long {
        val n = u16(offset)
        return u32(offset + 2 + 12L * n)
    }

    private fun readIfd(
        offset: Long,
        path: String,
        seen: MutableSet<Long>,
    ): TiffIfd {
        if (offset < 8 || offset + 2 > bytes.size) throw NotTiffException(source, "IFD offset $offset outside the file")
        if (!seen.add(offset)) throw NotTiffException(source, "IFD chain loops back to offset $offset")
        val n = u16(offset)
        if (offset + 2 + 12L * n + 4 > bytes.size) throw NotTiffException(source, "IFD at $offset runs past the end of the file")
        val entries = LinkedHashMap<Int, TiffEntry>()
        for (i in 0 until n) {
            val at = offset + 2 + 12L * i
            val tag = u16(at)
            val type = u16(at + 2)
            val count = u32(at + 4)
            val size = typeSize(type)
            if (size == 0) continue // unknown type: skip the entry, as readers must
            val total = size * count
            val data = if (total <= 4) at + 8 else u32(at + 8)
            if (data + total > bytes.size) throw NotTiffException(source, "tag $tag's values run past the end of the file")
            entries[tag] = TiffEntry(this, tag, type, count, data)
        }
        return TiffIfd(offset, entries, path)
    }

    fun u8(at: Long): Int = bytes[at.toInt()].toInt() and 0xFF

    fun u16(at: Long): Int {
        val a = u8(at)
        val b = u8(at + 1)
        return if (littleEndian) a or (b shl 8) else (a shl 8) or b
    }

    fun u32(at: Long): Long {
        val a = u16(at).toLong()
        val b = u16(at + 2).toLong()
        return if (littleEndian) a or (b shl 16) else (a shl 16) or b
    }

    fun u64(at: Long): Long {
        val a = u32(at)
        val b = u32(at + 4)
        return if (littleEndian) a or (b shl 32) else (a shl 32) or b
    }

    companion object {
        fun typeSize(type: Int): Int =
            when (type) {
                1, 2, 6, 7 -> 1
                3, 8 -> 2
                4, 9, 11, 13 -> 4
                5, 10, 12 -> 8
                else -> 0
            }
    }
}
