package io.isptf.core

import java.io.ByteArrayOutputStream

/** A minimal TIFF writer for the tests: BYTE/SHORT/LONG entries, either byte order. */
class TestTiff(
    private val littleEndian: Boolean,
) {
    private class Entry(
        val tag: Int,
        val type: Int,
        val values: LongArray,
    )

    private val ifds = ArrayList<MutableList<Entry>>()

    fun ifd(): Int {
        ifds.add(ArrayList())
        return ifds.size - 1
    }

    fun add(
        ifd: Int,
        tag: Int,
        type: Int,
        vararg values: Long,
    ) {
        ifds[ifd].add(Entry(tag, type, values))
    }

    /** `pixels[k]` is placed in the file, and tag 273/324 of IFD k (given as 0) points at it. */
    fun build(
        pixels: List<ByteArray>,
        offsetTag: Int = 273,
        subIfdOf: Int = -1,
        chunk: Int = 0,
    ): ByteArray {
        val buf = ByteArrayOutputStream()

        fun put(
            v: Long,
            size: Int,
        ) {
            for (i in 0 until size) {
                val shift = if (littleEndian) 8 * i else 8 * (size - 1 - i)
                buf.write(((v ushr shift) and 0xFF).toInt())
            }
        }
        val ifdSize = ifds.map { 2 + 12 * (it.size + 1 + if (subIfdOf >= 0 && it === ifds[subIfdOf]) 1 else 0) + 4 }
        val ifdAt = ArrayList<Int>()
        var at = 8
        ifdSize.forEach {
            ifdAt.add(at)
            at += it + 64 * 4 // room for out-of-line values
        }
        val pixAt = ArrayList<Int>()
        pixels.forEach {
            pixAt.add(at)
            at += it.size
        }
        buf.write(if (littleEndian) 'I'.code else 'M'.code)
        buf.write(if (littleEndian) 'I'.code else 'M'.code)
        put(42, 2)
        put(8, 4)
        ifds.forEachIndexed { k, entries0 ->
            val entries = entries0.toMutableList()
            val n = if (chunk > 0) pixels[k].size / chunk else 1
            entries.add(Entry(offsetTag, 4, LongArray(n) { i -> pixAt[k].toLong() + i * chunk }))
            if (subIfdOf >= 0 && k == subIfdOf) entries.add(Entry(330, 4, longArrayOf(ifdAt[k + 1].toLong())))
            entries.sortBy { it.tag }
            while (buf.size() < ifdAt[k]) buf.write(0)
            put(entries.size.toLong(), 2)
            var extra = ifdAt[k] + 2 + 12 * entries.size + 4
            val extraBytes = ArrayList<Pair<Int, Entry>>()
            for (e in entries) {
                val size = TiffFile.typeSize(e.type)
                put(e.tag.toLong(), 2)
                put(e.type.toLong(), 2)
                put(e.values.size.toLong(), 4)
                if (size * e.values.size <= 4) {
                    e.values.forEach { put(it, size) }
                    repeat(4 - size * e.values.size) { buf.write(0) }
                } else {
                    put(extra.toLong(), 4)
                    extraBytes.add(extra to e)
                    extra += size * e.values.size
                }
            }
            val next = if (k + 1 < ifds.size && subIfdOf < 0) ifdAt[k + 1] else 0
            put(next.toLong(), 4)
            for ((_, e) in extraBytes) e.values.forEach { put(it, TiffFile.typeSize(e.type)) }
        }
        pixels.forEachIndexed { k, p ->
            while (buf.size() < pixAt[k]) buf.write(0)
            buf.write(p)
        }
        return buf.toByteArray()
    }
}

/** The core's unit tests, run by `main` (no JUnit here: it cannot be downloaded). */
object CoreTests {
    private val tests = LinkedHashMap<String, () -> Unit>()

    private fun test(
        name: String,
        body: () -> Unit,
    ) {
        tests[name] = body
    }

    fun check(
        ok: Boolean,
        what: () -> String,
    ) {
        if (!ok) throw AssertionError(what())
    }

    inline fun <reified E : Throwable> expect(
        contains: String,
        body: () -> Unit,
    ) {
        try {
            body()
        } catch (e: Throwable) {
            if (e is E && (e.message ?: "").contains(contains)) return
            throw AssertionError("expected ${E::class.simpleName} with '$contains', got $e")
        }
        throw AssertionError("expected ${E::class.simpleName} with '$contains', nothing was thrown")
    }

    /** A small CFA DNG: 16-bit (or other) samples, given byte order, optional SubIFD/tiles. */
    fun dng(
        littleEndian: Boolean,
        w: Int,
        h: Int,
        pattern: IntArray,
        values: (Int, Int) -> Int,
        bits: Int = 16,
        compression: Int = 1,
        photometric: Int = 32803,
        subIfd: Boolean = false,
        dim: IntArray = intArrayOf(2, 2),
    ): ByteArray {
        val t = TestTiff(littleEndian)
        val root = t.ifd()
        val raw = if (subIfd) t.ifd() else root
        if (subIfd) {
            t.add(root, 254, 4, 1) // a preview in IFD0
            t.add(root, 256, 4, 2)
            t.add(root, 257, 4, 2)
            t.add(root, 262, 3, 2)
        }
        t.add(root, 274, 3, 6)
        t.add(raw, 254, 4, 0)
        t.add(raw, 256, 4, w.toLong())
        t.add(raw, 257, 4, h.toLong())
        t.add(raw, 258, 3, bits.toLong())
        t.add(raw, 259, 3, compression.toLong())
        t.add(raw, 262, 3, photometric.toLong())
        t.add(raw, 277, 3, 1)
        t.add(raw, 278, 4, h.toLong())
        t.add(raw, 33421, 3, *dim.map { it.toLong() }.toLongArray())
        t.add(raw, 33422, 1, *pattern.map { it.toLong() }.toLongArray())
        t.add(raw, 50713, 3, 2, 2)
        t.add(raw, 50714, 4, 10, 20, 30, 40)
        t.add(raw, 50717, 4, 1000)
        val rowBytes = (w * bits + 7) / 8
        val px = ByteArray(rowBytes * h)
        for (y in 0 until h) {
            var bit = y * rowBytes * 8L
            for (x in 0 until w) {
                val v = values(y, x)
                when (bits) {
                    16 -> {
                        val i = y * rowBytes + 2 * x
                        px[i] = (if (littleEndian) v and 0xFF else v ushr 8).toByte()
                        px[i + 1] = (if (littleEndian) v ushr 8 else v and 0xFF).toByte()
                    }

                    else -> {
                        for (k in bits - 1 downTo 0) {
                            if ((v ushr k) and 1 == 1) {
                                val i = (bit ushr 3).toInt()
                                px[i] = (px[i].toInt() or (0x80 ushr (bit and 7).toInt())).toByte()
                            }
                            bit++
                        }
                    }
                }
            }
        }
        val pixels = if (subIfd) listOf(ByteArray(8), px) else listOf(px)
        return t.build(pixels, subIfdOf = if (subIfd) 0 else -1)
    }

    init {
        test("json") {
            val v = Json.parse("""{"a": [1, -2.5e1, true, null, "x\"\u00e9\n"], "b": {}, "c": []}""").asObj("root")
            check(v["a"] == listOf(1L, -25.0, true, null, "x\"é\n")) { "parsed ${v["a"]}" }
            expect<JsonException>("offset") { Json.parse("{\"a\": }") }
            expect<JsonException>("trailing") { Json.parse("[1] 2") }
        }
        for (le in listOf(true, false)) {
            for ((bits, sub) in listOf(16 to false, 12 to true, 14 to false, 10 to true)) {
                test("dng ${if (le) "little" else "big"}-endian $bits-bit${if (sub) " in a SubIFD" else ""}") {
                    val w = 7
                    val h = 5
                    val value = { y: Int, x: Int -> (y * 131 + x * 17 + 5) % (1 shl bits.coerceAtMost(10)) }
                    val raw = DngReader.read(dng(le, w, h, intArrayOf(1, 0, 2, 1), value, bits, subIfd = sub), "t.dng")
                    check(
                        raw.width == w && raw.height == h && raw.cfaPattern == "GRBG",
                    ) { "read ${raw.width}x${raw.height} ${raw.cfaPattern}" }
                    check(raw.orientation == 6 && raw.whiteLevel == 1000.0) { "orientation ${raw.orientation} white ${raw.whiteLevel}" }
                    check(raw.blackLevel.toList() == listOf(10f, 20f, 30f, 40f)) { "black ${raw.blackLevel.toList()}" }
                    check(raw.rawIfd == if (sub) "ifd0.sub0" else "ifd0") { "raw IFD ${raw.rawIfd}" }
                    for (y in 0 until h) for (x in 0 until w) check(raw.mosaic[y * w + x] == value(y, x)) { "pixel $y,$x" }
                    // GRBG: crop one column, trim to even: 4 x 6 -> packed 2 x 3
                    val p = Bayer.pack(raw)
                    check(p.height == 2 && p.width == 3) { "packed ${p.height}x${p.width}" }
                    val want = ((value(1, 4).toFloat() - 30f) * (1.0 / (1000.0 - 30.0)).toFloat()).coerceIn(0f, 1f) // B at (1, 4): site 2
                    check(p[0, 1, 3] == want) { "B of block (0,1): ${p[0, 1, 3]} != $want" }
                }
            }
        }
        test("dng in tiles (big-endian, padded edge tiles)") {
            val w = 20
            val h = 5
            val t = TestTiff(littleEndian = false)
            val ifd = t.ifd()
            for ((tag, v) in listOf(254 to 0L, 256 to w.toLong(), 257 to h.toLong(), 258 to 16L, 259 to 1L, 262 to 32803L, 277 to 1L)) {
                t.add(ifd, tag, if (tag == 256 || tag == 257) 4 else 3, v)
            }
            t.add(ifd, 322, 3, 16)
            t.add(ifd, 323, 3, 16)
            t.add(ifd, 325, 4, 512, 512)
            t.add(ifd, 33421, 3, 2, 2)
            t.add(ifd, 33422, 1, 2, 1, 1, 0) // BGGR
            t.add(ifd, 50717, 3, 4095)
            val value = { y: Int, x: Int -> y * 100 + x }
            val blob = ByteArray(2 * 512)
            for (tile in 0 until 2) {
                for (y in 0 until 16) {
                    for (x in 0 until 16) {
                        val gx = tile * 16 + x
                        val v = if (y < h && gx < w) value(y, gx) else 0xABCD // padding
                        blob[tile * 512 + 2 * (y * 16 + x)] = (v ushr 8).toByte()
                        blob[tile * 512 + 2 * (y * 16 + x) + 1] = (v and 0xFF).toByte()
                    }
                }
            }
            val raw = DngReader.read(t.build(listOf(blob), offsetTag = 324, chunk = 512), "tiles.dng")
            check(raw.cfaPattern == "BGGR" && raw.width == w && raw.height == h) { "read ${raw.width}x${raw.height} ${raw.cfaPattern}" }
            for (y in 0 until h) {
                for (x in 0 until w) {
                    check(
                        raw.mosaic[y * w + x] == value(y, x),
                    ) { "pixel $y,$x = ${raw.mosaic[y * w + x]}" }
                }
            }
            check(raw.blackLevel.all { it == 0f } && raw.whiteLevel == 4095.0) { "levels" }
        }
        test("export JSON and the whole-frame executor") {
            val info =
                ExportInfo.parse(
                    """{"model": "m", "precision": "int8", "inputs": [{"name": "x", "shape": [1, 2, 2, 1], "dtype": "int8",
                    "scale": 0.5, "zero_point": -1}], "outputs": [{"name": "y", "shape": [1, 2, 2, 1], "dtype": "int8",
                    "scale": 0.25, "zero_point": 3}]}""",
                )
            check(info.inputs[0].scale == 0.5 && info.outputs[0].zeroPoint == 3 && info.manifest == null) { "parsed $info" }
            // the runner echoes its int8 input without quantisation parameters: the JSON's are used
            val exec = WholeFrameExecutor(info) { _, inputs -> listOf(Tensor(inputs[0].shape, DType.INT8, ints = inputs[0].ints)) }
            val y = exec.run(FloatImage(2, 2, 1, floatArrayOf(0f, 1f, -0.5f, 100f)))[0]
            // q = rint(x / 0.5 - 1) = -1, 1, -2, 127; y = (q - 3) * 0.25
            check(y.data.toList() == listOf(-1f, -0.5f, -1.25f, 31f)) { "y ${y.data.toList()}" }
            expect<InputShapeException>("takes a 2x2x1 frame") { exec.run(FloatImage(3, 2, 1)) }
        }
        test("dng errors") {
            val v = { _: Int, _: Int -> 100 }
            expect<CompressedDngException>(
                "lossless JPEG",
            ) { DngReader.read(dng(true, 4, 4, intArrayOf(0, 1, 1, 2), v, compression = 7), "c.dng") }
            expect<NotBayerException>(
                "LinearRaw",
            ) { DngReader.read(dng(true, 4, 4, intArrayOf(0, 1, 1, 2), v, photometric = 34892), "l.dng") }
            expect<NotBayerException>("3x3") {
                DngReader.read(dng(true, 4, 4, intArrayOf(0, 1, 1, 2), v, dim = intArrayOf(3, 3)), "x.dng")
            }
            expect<NotTiffException>("byte-order") { DngReader.read(ByteArray(16), "z.dng") }
            val truncated = dng(true, 8, 8, intArrayOf(0, 1, 1, 2), v)
            expect<CorruptRawException>("truncated") { DngReader.read(truncated.copyOf(truncated.size - 10), "t.dng") }
        }
        test("planner") {
            val s = Planner.axisSpans(250, 81, 10, 81)
            check(s.map { it.coreStart to it.coreEnd } == listOf(0 to 81, 81 to 162, 162 to 250)) { "cores $s" }
            check(s.map { it.start } == listOf(0, 71, 152) && s.map { it.statsStart } == listOf(0, 0, 81)) { "boxes $s" }
            check(Planner.axisSpans(200, 81, 10, 81).size == 2) { "a 38-px last piece joins the previous core" }
            check(Planner.roundCore(82, 81) == 162 && Planner.lcm(81, 1, 9) == 81) { "round / lcm" }
            val img = FloatImage(3, 2, 1, floatArrayOf(1f, 2f, 3f, 4f, 5f, 6f))
            val pad = Planner.padToMultiple(img, 4)
            // numpy reflect: rows 0 1 2 1, columns 0 1 0 1
            check(
                pad.data.toList() == listOf(1f, 2f, 1f, 2f, 3f, 4f, 3f, 4f, 5f, 6f, 5f, 6f, 3f, 4f, 3f, 4f),
            ) { "pad ${pad.data.toList()}" }
        }
        test("segment boxes") {
            // (core, halo, padded frame h x w) -> isp_tf.tiling.planner.segment_box, computed in Python
            val cases =
                listOf(
                    listOf(0, 0, 81, 81, 3, 250, 200) to listOf(0, 0, 87, 87),
                    listOf(162, 81, 250, 200, 3, 250, 200) to listOf(156, 75, 250, 200),
                    listOf(81, 0, 162, 81, 5, 250, 200) to listOf(76, 0, 167, 91),
                    listOf(0, 0, 20, 30, 3, 20, 30) to listOf(0, 0, 20, 30),
                    listOf(0, 8, 16, 24, 3, 16, 32) to listOf(0, 5, 16, 27),
                    listOf(81, 81, 162, 200, 2, 250, 200) to listOf(79, 77, 164, 200),
                    listOf(0, 0, 250, 200, 10, 250, 200) to listOf(0, 0, 250, 200),
                    listOf(40, 0, 80, 100, 10, 100, 100) to listOf(30, 0, 90, 100),
                )
            for ((c, want) in cases) {
                val got = Planner.segmentBox(c.subList(0, 4), c[4], c[5], c[6])
                check(got == want) { "segmentBox $c: $got != $want" }
            }
        }
        test("segment executor on a fake model") {
            // segment 0: local doubles the frame into store 1 (halo 1), its mean is statistic 0 (no model:
            // the store is the map); segment 1: local adds the mean to store 1 -> store 2, the output
            val manifest =
                TileManifest.parse(
                    """{"format": "isp_tf.tiling.manifest", "version": 1, "geometry": {"halo": 1, "stride": 1,
                    "core_step": 4, "align": 1, "output_scales": [1], "size_multiple": 2, "min_side": 1}, "core": 8,
                    "inputs": [{"index": 0, "name": "x", "role": "image", "shape": [1, 8, 8, 1], "dtype": "float32"},
                    {"index": 1, "name": "m", "role": "statistic", "shape": [1, 1], "dtype": "float32"}],
                    "outputs": [{"index": 0, "name": "y", "role": "image", "shape": [1, 8, 8, 1], "dtype": "float32", "output_scale": 1}],
                    "passes": [], "passes_omitted": 2,
                    "statistics": [{"name": "m", "input": 1, "output": null, "pass": null, "jump": 1, "depth": 0, "shape": [1, 1]}],
                    "segments": [{"local": {"model": "s0", "inputs": [["store", 0]], "outputs": [1], "halo": 1},
                      "stats": [{"model": null, "inputs": [["store", 1]], "outputs": [0], "min_side": 1}]},
                      {"local": {"model": "s1", "inputs": [["statistic", 0], ["store", 1]], "outputs": [2], "halo": 1}, "stats": []}],
                    "stores": [{"name": "x", "jump": [1, 1], "channels": 1, "dtype": "float32", "producer": -1, "last": 0, "output": null},
                      {"name": "d", "jump": [1, 1], "channels": 1, "dtype": "float32", "producer": 0, "last": 1, "output": null},
                      {"name": "y", "jump": [1, 1], "channels": 1, "dtype": "float32", "producer": 1, "last": 2, "output": 0}]}""",
                )
            check(manifest.hasSegments && manifest.segmentModels == listOf("s0", "s1")) { "models ${manifest.segmentModels}" }
            val runner =
                ModelRunner { model, inputs ->
                    if (model == 0) {
                        val x = inputs[0]
                        listOf(Tensor(x.shape, DType.FLOAT32, floats = FloatArray(x.size) { 2 * x.floats!![it] }))
                    } else {
                        val mean = inputs[0].toFloats()[0]
                        val d = inputs[1]
                        listOf(Tensor(d.shape, DType.FLOAT32, floats = FloatArray(d.size) { d.floats!![it] + mean }))
                    }
                }
            val frame = FloatImage(19, 13, 1, FloatArray(19 * 13) { (it * 7 % 11).toFloat() })
            val exec = SegmentExecutor(manifest, runner)
            val y = exec.run(frame)[0]
            val padded = Planner.padToMultiple(frame, 2) // 20 x 14 (3 x 2 tiles): the mean is the padded frame's
            val mean =
                padded.data
                    .map { 2.0 * it }
                    .average()
                    .toFloat()
            check(y.height == 19 && y.width == 13 && exec.tiles == 6 && exec.callsPerModel.toList() == listOf(6, 6)) {
                "${y.height}x${y.width}, tiles ${exec.tiles}, calls ${exec.callsPerModel.toList()}"
            }
            for (i in frame.data.indices) {
                check(
                    y.data[i] == 2 * frame.data[i] + mean,
                ) { "pixel $i: ${y.data[i]} != ${2 * frame.data[i] + mean}" }
            }
            expect<ManifestException>("segments only") { TiledExecutor(manifest, runner).run(frame) }
            manifest.checkSegmentModel(1, listOf(DType.FLOAT32, DType.FLOAT32), 1)
            expect<ModelMismatchException>("is INT8") { manifest.checkSegmentModel(0, listOf(DType.INT8), 1) }
            expect<ModelMismatchException>("2 outputs") { manifest.checkSegmentModel(1, listOf(DType.FLOAT32, DType.FLOAT32), 2) }
            val tiny = Tensor(intArrayOf(1, 1, 1, 1), DType.FLOAT32, floats = FloatArray(1))
            expect<ModelMismatchException>("box") { SegmentExecutor(manifest, { _, _ -> listOf(tiny) }).run(frame) }
        }
        test("quantise") {
            val t = Tensor.quantize(intArrayOf(4), floatArrayOf(-1f, 0f, 0.5f, 10f), DType.INT8, 1.0 / 64, -3)
            check(t.ints!!.toList() == listOf(-67, -3, 29, 127)) { "q ${t.ints.toList()}" }
            check(t.toFloats().toList() == listOf(-1f, 0f, 0.5f, 130 / 64f)) { "dq ${t.toFloats().toList()}" }
            check(Tensor.quantize(intArrayOf(1), floatArrayOf(-5f), DType.UINT8, 0.1, 0).ints!![0] == 0) { "uint8 clip" }
        }
        test("tiled executor on a fake model") {
            // a 'model': pass 0 outputs its input (the map, jump 1); the final pass adds the mean to its input
            val manifest =
                TileManifest.parse(
                    """{"format": "isp_tf.tiling.manifest", "version": 1, "geometry": {"halo": 2, "stride": 1,
                    "core_step": 4, "align": 1, "output_scales": [1], "size_multiple": 1, "min_side": 1}, "core": 8,
                    "inputs": [{"index": 0, "name": "x", "role": "image", "shape": [1, 8, 8, 1], "dtype": "float32"},
                    {"index": 1, "name": "m", "role": "statistic", "shape": [1, 1], "dtype": "float32"}],
                    "outputs": [{"index": 0, "name": "y", "role": "image", "shape": [1, 8, 8, 1], "dtype": "float32", "output_scale": 1}],
                    "passes": [{"model": "p0", "statistics": [0], "final": false}, {"model": "p1", "statistics": [], "final": true}],
                    "statistics": [{"name": "m", "input": 1, "output": 0, "pass": 0, "jump": 1, "depth": 0, "shape": [1, 1]}]}""",
                )
            val runner =
                ModelRunner { pass, inputs ->
                    val x = inputs[0]
                    val mean = inputs[1].toFloats()[0]
                    listOf(if (pass == 0) x else Tensor(x.shape, DType.FLOAT32, floats = FloatArray(x.size) { x.floats!![it] + mean }))
                }
            val frame = FloatImage(19, 13, 1, FloatArray(19 * 13) { (it * 7 % 11).toFloat() })
            val exec = TiledExecutor(manifest, runner)
            val y = exec.run(frame)[0]
            val mean =
                frame.data
                    .map { it.toDouble() }
                    .average()
                    .toFloat()
            check(exec.tiles == 4) { "tiles ${exec.tiles}" }
            for (i in frame.data.indices) check(y.data[i] == frame.data[i] + mean) { "pixel $i: ${y.data[i]} != ${frame.data[i] + mean}" }
            expect<ModelMismatchException>("outputs") { TiledExecutor(manifest, { _, _ -> emptyList() }).run(frame) }
            expect<ModelMismatchException>(
                "has 3 inputs",
            ) { manifest.checkPassModel(0, listOf(DType.FLOAT32, DType.FLOAT32, DType.FLOAT32), 1) }
            expect<ManifestException>("not a tile manifest") { TileManifest.parse("{\"format\": \"x\"}") }
        }
        test("orientation and ARGB") {
            val px = intArrayOf(1, 2, 3, 4, 5, 6) // 3 wide, 2 high
            check(Render.orient(px, 3, 2, 6).first.toList() == listOf(4, 1, 5, 2, 6, 3)) { "rotate cw" }
            check(Render.orient(px, 3, 2, 8).first.toList() == listOf(3, 6, 2, 5, 1, 4)) { "rotate ccw" }
            check(Render.orient(px, 3, 2, 3).first.toList() == listOf(6, 5, 4, 3, 2, 1)) { "180" }
            val argb = Render.toArgb(FloatImage(1, 1, 3, floatArrayOf(1.2f, 0.5f, -0.1f)))
            check(argb[0] == (0xFF shl 24 or (255 shl 16) or (128 shl 8))) { "argb ${Integer.toHexString(argb[0])}" }
        }
        test("memory and centre crop") {
            val peak = ProcessMemory.peakRssBytes()
            check(peak == null || peak > 1_000_000) { "peak RSS $peak" }
            val img = FloatImage(4, 5, 1, FloatArray(20) { it.toFloat() })
            check(centerCrop(img, 2, 3).data.toList() == listOf(6f, 7f, 8f, 11f, 12f, 13f)) { "centre crop" }
            expect<InputShapeException>("smaller") { centerCrop(img, 5, 5) }
        }
        test("timing") {
            var t = 0L
            val (_, s) =
                Timing.measure(2, 5, {
                    t += 1_000_000
                    t
                }) { }
            check(s.warmupMs.size == 2 && s.runsMs.size == 5 && s.medianMs == 1.0) { "$s" }
            check(TimingStats.median(listOf(3.0, 1.0, 2.0, 10.0)) == 2.5) { "even median" }
        }
    }

    fun runAll(): Int {
        var failed = 0
        for ((name, body) in tests) {
            try {
                body()
                println("PASS $name")
            } catch (e: Throwable) {
                failed++
                println("FAIL $name: $e")
            }
        }
        println("${tests.size - failed} passed, $failed failed")
        return if (failed == 0) 0 else 1
    }
}
