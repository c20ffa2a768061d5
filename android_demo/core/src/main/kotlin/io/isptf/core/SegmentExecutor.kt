package io.isptf.core

/**
 * Exact tiled inference that runs every op once per tile: the manifest's *segments*, the algorithm
 * of `isp_tf.tiling.tflite_executor.TiledSession.run` (see `segment_rules` in a manifest).
 *
 * Segments run in order, each over every tile (row by row): its local model reads the stores of
 * earlier segments over the tile's box (the core plus that segment's own halo, [Planner.segmentBox])
 * and writes its outputs' cores into frame-sized stores; its statistics models read the tile's core
 * and their maps are summed (Double) over the frame: sum / count is the whole-frame value every later
 * segment is fed (quantised like that input when it is integer). Stores are freed after the last
 * segment that reads them (band by band, a band per row of tiles, while that segment runs). The output
 * stores, cropped to the unpadded frame, are the image outputs (`output_scale` x the frame).
 *
 * Stores are kept as float32 (float tensors, and the outputs, dequantised) or raw int8/uint8 bytes
 * (the integer tensors of a quantised model, exact); Python's optional float16 storage is not offered.
 *
 * `runner.run(k, inputs)` runs segment model `k`: `manifest.segmentModels[k]` ([LocalSpec.modelIndex],
 * [StatsSpec.modelIndex], [PerFrameSpec.modelIndex]). The inputs are quantised from the manifest: a
 * store input like the store (the tensor it is), a statistic or a vector like the manifest's input of
 * that name.
 */
class SegmentExecutor(
    val manifest: TileManifest,
    val runner: ModelRunner,
    core: Int? = null,
) {
    val core: Int = Planner.roundCore(core ?: manifest.core, manifest.geometry.coreStep)

    /** The largest segment halo (the planner's boxes; the cores do not depend on it). */
    val halo: Int = manifest.segments.mapNotNull { it.local?.halo }.maxOrNull() ?: 0

    /** After [run]: tiles of the last frame, model calls made, and calls per model index. */
    var tiles: Int = 0
        private set
    var calls: Int = 0
        private set
    var callsPerModel: IntArray = IntArray(manifest.segmentModels.size)
        private set

    init {
        if (!manifest.hasSegments) throw ManifestException("this manifest has no segments: run it with TiledExecutor (the passes)")
        val frame = manifest.stores[0]
        if (frame.jumpNum != 1 || frame.jumpDen != 1) throw ManifestException("store 0 (the frame) has a jump other than 1")
        manifest.stores.forEach { s ->
            val k = s.output ?: return@forEach
            val spec = manifest.outputs[k]
            if (s.jumpNum != 1 || s.jumpDen != spec.outputScale || s.channels != spec.shape.last()) {
                throw ManifestException(
                    "store ${s.name} (jump ${s.jumpNum}/${s.jumpDen}, ${s.channels} channels) is not output ${spec.name} " +
                        "(scale ${spec.outputScale}, ${spec.shape.last()} channels)",
                )
            }
        }
    }

    fun plan(
        height: Int,
        width: Int,
    ): List<Tile> = Planner.planFrame(height, width, core, manifest.geometry.copy(halo = halo))

    private fun call(
        model: Int,
        inputs: List<Tensor>,
    ): List<Tensor> {
        val out = runner.run(model, inputs)
        calls++
        callsPerModel[model]++
        return out
    }

    /** Every image output (H*s, W*s, C) for `frame` and the per-frame vectors (in the manifest's order, less the per-frame model's). */
    fun run(
        frame: FloatImage,
        vectors: List<FloatArray> = emptyList(),
    ): List<FloatImage> {
        val m = manifest
        val image = m.inputs[m.imageIndex]
        val frameStore = m.stores[0]
        if (frame.channels != image.shape.last() || frame.channels != frameStore.channels) {
            throw InputShapeException("expected a frame of ${frameStore.channels} channels, got ${frame.channels}")
        }
        val vectorSpecs = m.vectorIndices.map { m.inputs[it] }
        val filled = m.perFrame?.outputVector
        val given = vectorSpecs.indices.filter { it != filled }
        if (vectors.size != given.size) {
            throw InputShapeException("this model takes ${given.size} per-frame input(s) beside the image, got ${vectors.size}")
        }
        val fixed = arrayOfNulls<FloatArray>(vectorSpecs.size)
        given.forEachIndexed { j, k ->
            val want = vectorSpecs[k].shape.fold(1) { a, b -> a * b }
            if (vectors[j].size != want) {
                throw InputShapeException(
                    "per-frame input ${vectorSpecs[k].name}: expected ${vectorSpecs[k].shape.contentToString()}, got ${vectors[j].size} values",
                )
            }
            fixed[k] = vectors[j]
        }
        calls = 0
        callsPerModel = IntArray(m.segmentModels.size)

        fun vector(k: Int): Tensor {
            val spec = vectorSpecs[k]
            return Tensor.quantize(spec.shape, fixed[k]!!, spec.dtype, spec.scale, spec.zeroPoint)
        }
        m.perFrame?.let { p ->
            // once, on the whole (unpadded) frame; quantised like the tile model's image input
            val inputs =
                p.inputs.map { f ->
                    if (f.kind == "image") {
                        Tensor.quantize(
                            intArrayOf(1, frame.height, frame.width, frame.channels),
                            frame.data,
                            image.dtype,
                            image.scale,
                            image.zeroPoint,
                        )
                    } else {
                        vector(f.index)
                    }
                }
            val results = call(p.modelIndex, inputs)
            val spec = vectorSpecs[p.outputVector]
            val v = results.singleOrNull()?.toFloats()
            if (v == null || v.size != spec.shape.fold(1) { a, b -> a * b }) {
                throw ModelMismatchException("the per-frame model ${p.model} must return one tensor of ${spec.shape.contentToString()}")
            }
            fixed[p.outputVector] = v
        }

        val tileList = plan(frame.height, frame.width)
        tiles = tileList.size
        val padded = Planner.padToMultiple(frame, m.geometry.sizeMultiple)
        val fh = padded.height
        val fw = padded.width
        val rows = tileList.map { it.core[0] to it.core[2] }.distinct().sortedBy { it.first }
        val data = HashMap<Int, StoreBands>()
        val stats = arrayOfNulls<FloatArray>(m.statistics.size)

        fun store(
            sid: Int,
            box: List<Int>,
        ): Tensor {
            val s = m.stores[sid]
            val y0 = s.size(box[0])
            val x0 = s.size(box[1])
            val y1 = s.size(box[2])
            val x1 = s.size(box[3])
            if (sid == 0) {
                val shape = intArrayOf(1, y1 - y0, x1 - x0, s.channels)
                val v = crop(padded, y0, x0, y1, x1)
                return if (s.dtype == "int8" || s.dtype == "uint8") {
                    Tensor.quantize(shape, v, DType.of(s.dtype), s.scale, s.zeroPoint)
                } else {
                    Tensor(shape, DType.FLOAT32, floats = v)
                }
            }
            val bands = data[sid] ?: throw ManifestException("store $sid (${s.name}) is read before it is written or after it is freed")
            return bands.read(y0, x0, y1, x1)
        }

        fun feed(
            f: Feed,
            box: List<Int>,
        ): Tensor =
            when (f.kind) {
                "store" -> {
                    store(f.index, box)
                }

                "vector" -> {
                    vector(f.index)
                }

                else -> {
                    val st = m.statistics[f.index]
                    val spec = m.inputs[st.input]
                    val v = stats[f.index] ?: throw ManifestException("statistic ${st.name} is read before it is computed")
                    Tensor.quantize(spec.shape, v, spec.dtype, spec.scale, spec.zeroPoint)
                }
            }

        for ((seg, segment) in m.segments.withIndex()) {
            val local = segment.local
            val segHalo = local?.halo ?: 0
            val sums = HashMap<Int, DoubleArray>()
            val counts = HashMap<Int, Long>()

            fun add(
                k: Int,
                values: (Int) -> Double,
                n: Int,
                channels: Int,
            ) {
                val want = m.statistics[k].shape.last()
                if (channels !=
                    want
                ) {
                    throw ModelMismatchException("the map of statistic ${m.statistics[k].name} has $channels channels, not $want")
                }
                val sum = sums.getOrPut(k) { DoubleArray(channels) }
                for (i in 0 until n) sum[i % channels] += values(i)
                counts[k] = (counts[k] ?: 0L) + n / channels
            }
            for ((r, row) in rows.withIndex()) {
                val inRow =
                    tileList
                        .filter { it.core[0] == row.first }
                        .map { Planner.segmentBox(it.core, segHalo, fh, fw) to it }
                        .sortedWith(compareBy({ it.first[3] - it.first[1] }, { it.first[1] }))
                for ((box, tile) in inRow) {
                    if (local != null) {
                        val results = call(local.modelIndex, local.inputs.map { feed(it, box) })
                        if (results.size != local.outputs.size) {
                            throw ModelMismatchException(
                                "${local.model} returned ${results.size} outputs, the manifest lists ${local.outputs.size}",
                            )
                        }
                        results.forEachIndexed { j, y -> writeCore(local.outputs[j], y, box, tile.core, rows, r, fh, fw, data) }
                    }
                    val (cy0, cx0, cy1, cx1) = tile.core
                    for (part in segment.stats) {
                        if (minOf(cy1 - cy0, cx1 - cx0) < part.minSide) continue
                        if (part.model == null) { // the map is the stored tensor itself
                            val sid = part.inputs[0].index
                            val s = m.stores[sid]
                            val t = store(sid, tile.core)
                            val ints = t.ints
                            val floats = t.floats
                            val values: (Int) -> Double =
                                when {
                                    ints != null && s.scale != 0.0 -> { i -> (ints[i].toDouble() - s.zeroPoint) * s.scale }
                                    ints != null -> { i -> ints[i].toDouble() }
                                    else -> { i -> floats!![i].toDouble() }
                                }
                            add(part.outputs[0], values, t.size, t.shape.last())
                            continue
                        }
                        val results = call(part.modelIndex, part.inputs.map { feed(it, tile.core) })
                        if (results.size != part.outputs.size) {
                            throw ModelMismatchException(
                                "${part.model} returned ${results.size} maps, the manifest lists ${part.outputs.size}",
                            )
                        }
                        results.forEachIndexed { j, y ->
                            if (y.shape.size != 4 ||
                                y.shape[0] != 1
                            ) {
                                throw ModelMismatchException("${part.model} map $j is ${y.shape.contentToString()}")
                            }
                            if (y.dtype != DType.FLOAT32 && y.scale == 0.0) {
                                throw ModelMismatchException("${part.model} map $j is ${y.dtype} without its quantisation")
                            }
                            val v = y.toFloats()
                            add(part.outputs[j], { i -> v[i].toDouble() }, v.size, y.shape[3])
                        }
                    }
                }
                // rows no later tile of this segment reads: free them in the stores read for the last time
                if (r + 1 < rows.size) {
                    val keepFrom =
                        tileList.filter { it.core[0] == rows[r + 1].first }.minOf { Planner.segmentBox(it.core, segHalo, fh, fw)[0] }
                    data.forEach { (sid, bands) ->
                        val s = m.stores[sid]
                        if (s.output == null && s.last <= seg) bands.freeBefore(s.size(keepFrom))
                    }
                }
            }
            for ((k, sum) in sums) {
                val st = m.statistics[k]
                val n = counts.getValue(k)
                if (n == 0L) throw InputShapeException("${st.name}: the frame is smaller than one pooling window")
                if (sum.size != st.shape.fold(1) { a, b -> a * b }) throw ModelMismatchException("statistic ${st.name}: ${sum.size} values")
                stats[k] = FloatArray(sum.size) { (sum[it] / n).toFloat() }
            }
            segment.stats.forEach { p ->
                p.outputs.forEach { k ->
                    if (stats[k] == null) throw InputShapeException("${m.statistics[k].name}: the frame is smaller than one pooling window")
                }
            }
            data.keys.filter { m.stores[it].last <= seg && m.stores[it].output == null }.forEach { data.remove(it) }
        }
        return m.stores
            .withIndex()
            .filter { it.value.output != null }
            .sortedBy { it.value.output }
            .map { (sid, s) ->
                val bands = data[sid] ?: throw ManifestException("output store ${s.name} was never written")
                val full = bands.read(0, 0, s.size(fh), s.size(fw))
                cropImage(FloatImage(s.size(fh), s.size(fw), s.channels, full.floats!!), s.size(frame.height), s.size(frame.width))
            }
    }

    /** A local model's output `y` (over `box`) -> the core of store `sid`. */
    private fun writeCore(
        sid: Int,
        y: Tensor,
        box: List<Int>,
        core: List<Int>,
        rows: List<Pair<Int, Int>>,
        r: Int,
        fh: Int,
        fw: Int,
        data: HashMap<Int, StoreBands>,
    ) {
        val s = manifest.stores[sid]
        val by0 = s.size(box[0])
        val bx0 = s.size(box[1])
        val bh = s.size(box[2]) - by0
        val bw = s.size(box[3]) - bx0
        if (y.shape.size != 4 || y.shape[0] != 1 || y.shape[1] != bh || y.shape[2] != bw || y.shape[3] != s.channels) {
            throw ModelMismatchException(
                "store ${s.name}: the model returned ${y.shape.contentToString()} for a box of ${bh}x$bw, not (1, $bh, $bw, ${s.channels})",
            )
        }
        val bands = data.getOrPut(sid) { StoreBands(s, if (s.output != null) listOf(0 to fh) else rows, s.size(fw)) }
        val cy0 = s.size(core[0])
        val cx0 = s.size(core[1])
        val cy1 = s.size(core[2])
        val cx1 = s.size(core[3])
        if (s.raw) {
            if (y.dtype.name.lowercase() !=
                s.dtype
            ) {
                throw ModelMismatchException("store ${s.name} is ${s.dtype}, the model returned ${y.dtype}")
            }
            bands.write(r, cy0, cx0, cy1, cx1, null, y.ints!!, bw, cy0 - by0, cx0 - bx0)
        } else {
            // a runner that does not know the quantisation (scale 0) gets the store's
            val q =
                if (y.dtype != DType.FLOAT32 &&
                    y.scale == 0.0
                ) {
                    Tensor(y.shape, y.dtype, ints = y.ints, scale = s.scale, zeroPoint = s.zeroPoint)
                } else {
                    y
                }
            bands.write(if (s.output != null) 0 else r, cy0, cx0, cy1, cx1, q.toFloats(), null, bw, cy0 - by0, cx0 - bx0)
        }
    }
}

/**
 * A frame-sized store kept as one band of rows per row of tiles (`rows`, input px), so the bands no
 * later tile reads can be freed while a segment runs. Float32, or raw bytes for an int8/uint8 store.
 */
private class StoreBands(
    val spec: StoreSpec,
    rows: List<Pair<Int, Int>>,
    val width: Int,
) {
    val channels = spec.channels
    val edges = rows.map { spec.size(it.first) to spec.size(it.second) }
    private val floats = arrayOfNulls<FloatArray>(edges.size)
    private val bytes = arrayOfNulls<ByteArray>(edges.size)
    private val dtype = if (spec.raw) DType.of(spec.dtype) else DType.FLOAT32

    fun write(
        r: Int,
        y0: Int,
        x0: Int,
        y1: Int,
        x1: Int,
        srcFloats: FloatArray?,
        srcInts: IntArray?,
        srcWidth: Int,
        sy0: Int,
        sx0: Int,
    ) {
        val (b0, b1) = edges[r]
        check(y0 >= b0 && y1 <= b1) { "rows $y0-$y1 outside band $b0-$b1" }
        val n = (b1 - b0) * width * channels
        val c = channels
        val rowLen = (x1 - x0) * c
        if (srcFloats != null) {
            val band = floats[r] ?: FloatArray(n).also { floats[r] = it }
            for (y in y0 until y1) {
                System.arraycopy(srcFloats, ((sy0 + y - y0) * srcWidth + sx0) * c, band, ((y - b0) * width + x0) * c, rowLen)
            }
        } else {
            val band = bytes[r] ?: ByteArray(n).also { bytes[r] = it }
            val src = srcInts!!
            for (y in y0 until y1) {
                val from = ((sy0 + y - y0) * srcWidth + sx0) * c
                val to = ((y - b0) * width + x0) * c
                for (i in 0 until rowLen) band[to + i] = src[from + i].toByte()
            }
        }
    }

    fun read(
        y0: Int,
        x0: Int,
        y1: Int,
        x1: Int,
    ): Tensor {
        val c = channels
        val w = x1 - x0
        val rowLen = w * c
        val shape = intArrayOf(1, y1 - y0, w, c)
        val outF = if (dtype == DType.FLOAT32) FloatArray((y1 - y0) * rowLen) else null
        val outI = if (outF == null) IntArray((y1 - y0) * rowLen) else null
        val unsigned = dtype == DType.UINT8
        for ((r, band) in edges.withIndex()) {
            val (b0, b1) = band
            val from = maxOf(y0, b0)
            val to = minOf(y1, b1)
            if (from >= to) continue
            val f = floats[r]
            val b = bytes[r]
            if (f == null &&
                b == null
            ) {
                throw ManifestException("rows $b0-$b1 of store ${spec.name} are read after being freed (or before written)")
            }
            for (y in from until to) {
                val src = ((y - b0) * width + x0) * c
                val dst = (y - y0) * rowLen
                if (outF != null) {
                    System.arraycopy(f!!, src, outF, dst, rowLen)
                } else {
                    for (i in 0 until rowLen) outI!![dst + i] = if (unsigned) b!![src + i].toInt() and 0xFF else b!![src + i].toInt()
                }
            }
        }
        return if (outF != null) {
            Tensor(shape, DType.FLOAT32, floats = outF)
        } else {
            Tensor(shape, dtype, ints = outI, scale = spec.scale, zeroPoint = spec.zeroPoint)
        }
    }

    /** Drop the bands that end at or above store row `limit`. */
    fun freeBefore(limit: Int) {
        for ((r, band) in edges.withIndex()) {
            if (band.second <= limit) {
                floats[r] = null
                bytes[r] = null
            }
        }
    }
}
