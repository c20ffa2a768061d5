package io.isptf.core

/** One tile's extent along one axis (`isp_tf.tiling.planner.Span`). */
data class Span(
    val start: Int,
    val end: Int,
    val coreStart: Int,
    val coreEnd: Int,
    val statsStart: Int,
)

/** One tile: `(y0, x0, y1, x1)` boxes in input px of the padded frame (`isp_tf.tiling.planner.Tile`). */
data class Tile(
    val box: List<Int>,
    val core: List<Int>,
    val statsBox: List<Int>,
)

/** The one tile planner, the same rules as `isp_tf.tiling.planner` (see `PLAN_RULES` in a manifest). */
object Planner {
    fun gcd(
        a: Int,
        b: Int,
    ): Int = if (b == 0) a else gcd(b, a % b)

    fun lcm(vararg values: Int): Int = values.fold(1) { out, v -> out / gcd(out, v) * v }

    fun roundCore(
        core: Int,
        coreStep: Int,
    ): Int = maxOf(coreStep, (core + coreStep - 1) / coreStep * coreStep)

    fun paddedSize(
        height: Int,
        width: Int,
        multiple: Int,
    ): IntArray = intArrayOf((height + multiple - 1) / multiple * multiple, (width + multiple - 1) / multiple * multiple)

    fun axisSpans(
        length: Int,
        core: Int,
        halo: Int,
        align: Int = 1,
    ): List<Span> {
        if (length <= 0 || core <= 0) throw InputShapeException("cannot plan tiles of $core px over $length px")
        val a = maxOf(1, align)
        val cuts = (0 until length step core).toMutableList().apply { add(length) }
        if (cuts.size > 2 && cuts[cuts.size - 1] - cuts[cuts.size - 2] < core / 2) cuts.removeAt(cuts.size - 2)
        return (0 until cuts.size - 1).map { k ->
            val start = maxOf(0, cuts[k] - halo)
            Span(start, minOf(length, cuts[k + 1] + halo), cuts[k], cuts[k + 1], start / a * a)
        }
    }

    /** The tiles of an unpadded [height] x [width] frame: refused under one tile, padded to the size multiple. */
    fun planFrame(
        height: Int,
        width: Int,
        core: Int,
        geometry: Geometry,
    ): List<Tile> {
        if (minOf(height, width) < geometry.minSide) {
            throw InputShapeException(
                "input of ${height}x$width px is smaller than one tile of this model " +
                    "(${geometry.minSide}x${geometry.minSide} input px)",
            )
        }
        val (h, w) = paddedSize(height, width, geometry.sizeMultiple)
        return planTiles(h, w, core, geometry)
    }

    fun planTiles(
        height: Int,
        width: Int,
        core: Int,
        geometry: Geometry,
    ): List<Tile> {
        val c = roundCore(core, geometry.coreStep)
        val align = if (geometry.align != 0) geometry.align else geometry.stride
        val rows = axisSpans(height, c, geometry.halo, align)
        val cols = axisSpans(width, c, geometry.halo, align)
        return rows.flatMap { r ->
            cols.map { k ->
                Tile(
                    listOf(r.start, k.start, r.end, k.end),
                    listOf(r.coreStart, k.coreStart, r.coreEnd, k.coreEnd),
                    listOf(r.statsStart, k.statsStart, r.end, k.end),
                )
            }
        }
    }

    /**
     * What a segment's local model reads for `core` `(y0, x0, y1, x1)` (`isp_tf.tiling.planner.segment_box`):
     * per axis, a core shorter than 8 `halo` gets the core plus `halo`, cut at the frame's edges; a longer
     * one a box of `min(length, core + 2 halo)` shifted inside the frame (one box size for every full core,
     * so an interpreter keeps its shape). `frameH` x `frameW`: the padded frame.
     */
    fun segmentBox(
        core: List<Int>,
        halo: Int,
        frameH: Int,
        frameW: Int,
    ): List<Int> {
        fun axis(
            start: Int,
            end: Int,
            length: Int,
        ): Pair<Int, Int> {
            if (end - start < 8 * halo) return maxOf(0, start - halo) to minOf(length, end + halo)
            val size = minOf(length, end - start + 2 * halo)
            val first = minOf(maxOf(0, start - halo), length - size)
            return first to first + size
        }
        val (y0, y1) = axis(core[0], core[2], frameH)
        val (x0, x1) = axis(core[1], core[3], frameW)
        return listOf(y0, x0, y1, x1)
    }

    /** Reflect-pad (numpy `mode="reflect"`; `"edge"` for a 1-px side) the bottom and right to multiples. */
    fun padToMultiple(
        frame: FloatImage,
        multiple: Int,
    ): FloatImage {
        val (h, w) = paddedSize(frame.height, frame.width, multiple)
        if (h == frame.height && w == frame.width) return frame
        val edge = minOf(frame.height, frame.width) <= 1

        fun src(
            i: Int,
            n: Int,
        ): Int {
            if (i < n) return i
            if (edge) return n - 1
            val period = 2 * (n - 1)
            val m = i % period
            return if (m < n) m else period - m
        }
        val c = frame.channels
        val out = FloatImage(h, w, c)
        for (y in 0 until h) {
            val sy = src(y, frame.height)
            for (x in 0 until w) {
                System.arraycopy(frame.data, (sy * frame.width + src(x, frame.width)) * c, out.data, (y * w + x) * c, c)
            }
        }
        return out
    }
}

/** A crop `(y0, x0, y1, x1)` of `frame` as a (1, h, w, c) float array. */
internal fun crop(
    frame: FloatImage,
    y0: Int,
    x0: Int,
    y1: Int,
    x1: Int,
): FloatArray {
    val c = frame.channels
    val w = x1 - x0
    val out = FloatArray((y1 - y0) * w * c)
    for (y in y0 until y1) System.arraycopy(frame.data, (y * frame.width + x0) * c, out, (y - y0) * w * c, w * c)
    return out
}

/**
 * Exact tiled inference driven by a tile manifest, the algorithm of
 * `isp_tf.tiling.tflite_executor.TiledSession.run`: for every statistics pass, run every tile's
 * statistics box with the statistics known so far, sum each map over the tile's core (float64) and
 * divide by the count; then the final pass writes every tile's core into the output.
 *
 * `runner.run(pass, inputs)` runs pass model `pass` (`manifest.passes[pass].model`).
 */
class TiledExecutor(
    val manifest: TileManifest,
    val runner: ModelRunner,
    core: Int? = null,
) {
    val core: Int = Planner.roundCore(core ?: manifest.core, manifest.geometry.coreStep)
    val align: Int =
        Planner.lcm(
            if (manifest.geometry.align != 0) manifest.geometry.align else manifest.geometry.stride,
            manifest.geometry.stride,
            *manifest.statistics.map { it.jump }.toIntArray(),
        )

    /** After [run]: tiles of the last frame, and model calls made. */
    var tiles: Int = 0
        private set
    var calls: Int = 0
        private set

    fun plan(
        height: Int,
        width: Int,
    ): List<Tile> = Planner.planFrame(height, width, core, manifest.geometry.copy(align = align))

    private fun quantized(
        spec: TensorSpec,
        shape: IntArray,
        values: FloatArray,
    ): Tensor = Tensor.quantize(shape, values, spec.dtype, spec.scale, spec.zeroPoint)

    /** Every image output (H*s, W*s, C) for `frame` (and one float vector per per-frame input). */
    fun run(
        frame: FloatImage,
        vectors: List<FloatArray> = emptyList(),
    ): List<FloatImage> {
        val m = manifest
        val image = m.inputs[m.imageIndex]
        val channels = image.shape.last()
        if (frame.channels != channels) throw InputShapeException("expected a frame of $channels channels, got ${frame.channels}")
        val vectorIdx = m.vectorIndices
        if (vectors.size !=
            vectorIdx.size
        ) {
            throw InputShapeException("this model takes ${vectorIdx.size} per-frame input(s) beside the image, got ${vectors.size}")
        }
        if (m.passes.isEmpty()) throw ManifestException("this manifest has no passes (segments only): run it with SegmentExecutor")
        val fixed = HashMap<Int, Tensor>()
        vectorIdx.forEachIndexed { k, idx ->
            val spec = m.inputs[idx]
            val want = spec.shape.fold(1) { a, b -> a * b }
            if (vectors[k].size !=
                want
            ) {
                throw InputShapeException(
                    "per-frame input ${spec.name}: expected ${spec.shape.contentToString()}, got ${vectors[k].size} values",
                )
            }
            fixed[idx] = quantized(spec, spec.shape, vectors[k])
        }
        val tileList = plan(frame.height, frame.width)
        tiles = tileList.size
        calls = 0
        val padded = Planner.padToMultiple(frame, m.geometry.sizeMultiple)
        val given = HashMap<Int, FloatArray>()
        m.statistics.forEach { given[it.input] = FloatArray(it.shape.fold(1) { a, b -> a * b }) }
        var outs: List<FloatImage>? = null
        var scales: List<Int> = emptyList()
        for ((p, pass) in m.passes.withIndex()) {
            val final = p == m.passes.size - 1
            val group = pass.statistics.map { m.statistics[it] }
            val sums = group.map { DoubleArray(it.shape.last()) }
            val counts = IntArray(group.size)
            val boxes =
                tileList
                    .map { (if (final) it.box else it.statsBox) to it }
                    .sortedWith(
                        compareBy({
                            it.first[2] - it.first[0]
                        }, { it.first[3] - it.first[1] }, { it.first[0] }, { it.first[1] }, { it.first[2] }, { it.first[3] }),
                    )
            for ((box, tile) in boxes) {
                val (y0, x0, y1, x1) = box
                val bh = y1 - y0
                val bw = x1 - x0
                val inputs =
                    m.inputs.map { spec ->
                        when {
                            spec.index == m.imageIndex -> quantized(spec, intArrayOf(1, bh, bw, channels), crop(padded, y0, x0, y1, x1))
                            fixed.containsKey(spec.index) -> fixed.getValue(spec.index)
                            else -> quantized(spec, spec.shape, given.getValue(spec.index))
                        }
                    }
                val results = runner.run(p, inputs)
                calls++
                val (cy0, cx0, cy1, cx1) = tile.core
                if (final) {
                    if (results.size !=
                        m.outputs.size
                    ) {
                        throw ModelMismatchException(
                            "the final pass returned ${results.size} outputs, the manifest lists ${m.outputs.size}",
                        )
                    }
                    if (outs == null) {
                        scales = results.mapIndexed { k, r -> outputScale(r, bh, bw, m.outputs[k]) }
                        outs =
                            results.mapIndexed { k, r -> FloatImage(padded.height * scales[k], padded.width * scales[k], r.shape.last()) }
                    }
                    results.forEachIndexed { k, r ->
                        val s = scales[k]
                        if (outputScale(r, bh, bw, m.outputs[k]) != s) throw ModelMismatchException("output $k changes scale between tiles")
                        val o = outs[k]
                        val c = o.channels
                        val y = r.toFloats()
                        val rw = bw * s
                        val rowLen = (cx1 - cx0) * s * c
                        for (yy in cy0 * s until cy1 * s) {
                            System.arraycopy(y, ((yy - y0 * s) * rw + (cx0 - x0) * s) * c, o.data, (yy * o.width + cx0 * s) * c, rowLen)
                        }
                    }
                    continue
                }
                if (results.size !=
                    group.size
                ) {
                    throw ModelMismatchException(
                        "pass $p returned ${results.size} outputs, the manifest expects ${group.size} statistics maps",
                    )
                }
                group.forEachIndexed { k, st ->
                    val r = results[k]
                    val j = st.jump
                    if (r.shape.size != 4 || r.shape[0] != 1 || r.shape[3] != st.shape.last()) {
                        throw ModelMismatchException(
                            "pass $p output $k has shape ${r.shape.contentToString()}, statistic ${st.name} needs (1, h, w, ${st.shape.last()})",
                        )
                    }
                    val mh = r.shape[1]
                    val mw = r.shape[2]
                    val c = r.shape[3]
                    val ry0 = (cy0 - y0) / j
                    val ry1 = minOf(mh, -Math.floorDiv(-(cy1 - y0), j))
                    val rx0 = (cx0 - x0) / j
                    val rx1 = minOf(mw, -Math.floorDiv(-(cx1 - x0), j))
                    val v = r.toFloats()
                    val sum = sums[k]
                    for (yy in ry0 until ry1) {
                        for (xx in rx0 until rx1) {
                            for (ch in 0 until c) {
                                sum[ch] +=
                                    v[(yy * mw + xx) * c + ch].toDouble()
                            }
                        }
                    }
                    counts[k] += maxOf(0, ry1 - ry0) * maxOf(0, rx1 - rx0)
                }
            }
            group.forEachIndexed { k, st ->
                if (counts[k] == 0) throw InputShapeException("${st.name}: the frame is smaller than one pooling window")
                given[st.input] = FloatArray(sums[k].size) { (sums[k][it] / counts[k]).toFloat() }
            }
        }
        return outs!!.mapIndexed { k, o -> cropImage(o, frame.height * scales[k], frame.width * scales[k]) }
    }

    private fun outputScale(
        r: Tensor,
        bh: Int,
        bw: Int,
        spec: TensorSpec,
    ): Int {
        val s = if (r.shape.size == 4) r.shape[1] / bh else 0
        if (s < 1 || r.shape[1] != s * bh || r.shape[2] != s * bw) {
            throw ModelMismatchException(
                "an output of ${r.shape.contentToString()} for a tile of ${bh}x$bw: not a whole-number scale of the input",
            )
        }
        if (s != spec.outputScale) throw ModelMismatchException("output ${spec.name} has scale $s, the manifest says ${spec.outputScale}")
        if (r.shape[3] !=
            spec.shape.last()
        ) {
            throw ModelMismatchException("output ${spec.name} has ${r.shape[3]} channels, the manifest says ${spec.shape.last()}")
        }
        return s
    }
}

/** The top-left `h` x `w` of `img`. */
fun cropImage(
    img: FloatImage,
    h: Int,
    w: Int,
): FloatImage {
    if (h == img.height && w == img.width) return img
    return FloatImage(h, w, img.channels, crop(img, 0, 0, h, w))
}

/** A whole-frame (non-tiled) export: one call at the export's fixed input size, (de)quantised from its JSON. */
class WholeFrameExecutor(
    val info: ExportInfo,
    val runner: ModelRunner,
) {
    fun run(
        frame: FloatImage,
        vectors: List<FloatArray> = emptyList(),
    ): List<FloatImage> {
        val image = info.inputs[0]
        val (_, h, w, c) = image.shape.toList()
        if (frame.height != h || frame.width != w || frame.channels != c) {
            throw InputShapeException(
                "this export takes a ${h}x${w}x$c frame, got ${frame.height}x${frame.width}x${frame.channels} (export with --tile N to run any size)",
            )
        }
        if (vectors.size !=
            info.inputs.size - 1
        ) {
            throw InputShapeException("this model takes ${info.inputs.size - 1} per-frame input(s), got ${vectors.size}")
        }
        val inputs =
            listOf(Tensor.quantize(image.shape, frame.data, image.dtype, image.scale, image.zeroPoint)) +
                vectors.mapIndexed { k, v ->
                    val s = info.inputs[k + 1]
                    Tensor.quantize(s.shape, v, s.dtype, s.scale, s.zeroPoint)
                }
        val results = runner.run(0, inputs)
        if (results.size !=
            info.outputs.size
        ) {
            throw ModelMismatchException("the model returned ${results.size} outputs, its JSON lists ${info.outputs.size}")
        }
        return results.mapIndexed { k, r ->
            val spec = info.outputs[k]
            if (!r.shape.contentEquals(
                    spec.shape,
                )
            ) {
                throw ModelMismatchException(
                    "output ${spec.name} is ${r.shape.contentToString()}, its JSON says ${spec.shape.contentToString()}",
                )
            }
            // a runner that does not know the quantisation (scale 0) gets the JSON's
            val q =
                if (r.dtype != DType.FLOAT32 &&
                    r.scale == 0.0
                ) {
                    Tensor(r.shape, r.dtype, ints = r.ints, scale = spec.scale, zeroPoint = spec.zeroPoint)
                } else {
                    r
                }
            FloatImage(r.shape[1], r.shape[2], r.shape[3], q.toFloats())
        }
    }
}

/** The centred `h` x `w` window of `img` (a whole-frame export takes exactly its export size). */
fun centerCrop(
    img: FloatImage,
    h: Int,
    w: Int,
): FloatImage {
    if (h > img.height ||
        w > img.width
    ) {
        throw InputShapeException("a ${img.height}x${img.width} frame is smaller than the model's ${h}x$w input")
    }
    val y0 = (img.height - h) / 2
    val x0 = (img.width - w) / 2
    return FloatImage(h, w, img.channels, crop(img, y0, x0, y0 + h, x0 + w))
}
