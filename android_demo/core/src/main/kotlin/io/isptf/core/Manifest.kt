package io.isptf.core

/** `isp_tf.tiling.planner.Geometry`: everything the planner needs, in model-input pixels. */
data class Geometry(
    val halo: Int,
    val stride: Int = 1,
    val coreStep: Int = 1,
    val align: Int = 0,
    val outputScales: List<Int> = listOf(1),
    val sizeMultiple: Int = 1,
    val minSide: Int = 1,
)

/** One model input/output as a manifest or export JSON describes it. */
data class TensorSpec(
    val index: Int,
    val name: String,
    /** "image", "per_frame" or "statistic" (inputs); "image" (outputs). */
    val role: String,
    val shape: IntArray,
    val dtype: DType,
    /** Quantisation scale (0: not quantised). */
    val scale: Double = 0.0,
    val zeroPoint: Int = 0,
    /** Outputs of a manifest: output px per input px. */
    val outputScale: Int = 1,
)

data class PassSpec(
    val model: String,
    val statistics: List<Int>,
    val final: Boolean,
)

data class StatisticSpec(
    val name: String,
    val input: Int,
    /** Output index in its pass model, and that pass (-1 both in a manifest without passes). */
    val output: Int,
    val pass: Int,
    val jump: Int,
    val depth: Int,
    val shape: IntArray,
)

/** One segment-model input (`isp_tf.tiling.segments.Feed`): `kind` "store", "vector", "statistic" or "image". */
data class Feed(
    val kind: String,
    val index: Int,
)

/**
 * A frame-sized tensor kept between segments (manifest `stores`; store 0 is the padded frame).
 * `jump` = [jumpNum] / [jumpDen] model-input px per store px; [last]: the last segment reading it;
 * [output]: which image output it is (null: none).
 */
data class StoreSpec(
    val name: String,
    val jumpNum: Int,
    val jumpDen: Int,
    val channels: Int,
    val dtype: String,
    val scale: Double,
    val zeroPoint: Int,
    val producer: Int,
    val last: Int,
    val output: Int?,
) {
    /** Store px of `px` model-input px (`int(px / jump)`). */
    fun size(px: Int): Int = Math.floorDiv(px * jumpDen, jumpNum)

    /** Whether its values are kept raw (int8 / uint8 tensors of a quantised model; outputs are dequantised). */
    val raw: Boolean get() = output == null && (dtype == "int8" || dtype == "uint8")
}

/** A segment's tile-by-tile model: [inputs] over each tile's box (core + [halo]), outputs -> the cores of stores [outputs]. */
data class LocalSpec(
    val model: String,
    val inputs: List<Feed>,
    val outputs: List<Int>,
    val halo: Int,
    /** Its number for [ModelRunner.run] (an index into [TileManifest.segmentModels]). */
    val modelIndex: Int,
)

/**
 * A statistics model: [inputs] over each tile's core; output j is the map of statistic [outputs][j].
 * [model] null: the map is its single store input itself ([modelIndex] -1). Cores under [minSide] are skipped.
 */
data class StatsSpec(
    val model: String?,
    val inputs: List<Feed>,
    val outputs: List<Int>,
    val minSide: Int,
    val modelIndex: Int,
)

data class SegmentSpec(
    val local: LocalSpec?,
    val stats: List<StatsSpec>,
)

/** A split model's per-frame part: run once on the whole (unpadded) frame; its output is per-frame vector [outputVector]. */
data class PerFrameSpec(
    val model: String,
    val inputs: List<Feed>,
    val outputVector: Int,
    val modelIndex: Int,
)

/**
 * A tile manifest (`isp_tf.tiling.manifest`, format `isp_tf.tiling.manifest` version 1),
 * checked on parsing. The pass model files are named by [passes], the segment models by
 * [segmentModels] (beside the manifest); [segments] is empty for a manifest written before segments.
 */
class TileManifest(
    val geometry: Geometry,
    val core: Int,
    val resizable: Boolean,
    val inputs: List<TensorSpec>,
    val outputs: List<TensorSpec>,
    val passes: List<PassSpec>,
    val statistics: List<StatisticSpec>,
    val sourceModel: String?,
    val precision: String?,
    val segments: List<SegmentSpec> = emptyList(),
    val stores: List<StoreSpec> = emptyList(),
    val perFrame: PerFrameSpec? = null,
) {
    val imageIndex: Int get() = inputs.first { it.role == "image" }.index
    val vectorIndices: List<Int> get() = inputs.filter { it.role == "per_frame" }.map { it.index }

    /** Whether [SegmentExecutor] can run it (else only the passes, [TiledExecutor]). */
    val hasSegments: Boolean get() = segments.isNotEmpty()

    /**
     * The segment model files in [ModelRunner] order: segment by segment, its local model, then its
     * statistics models that have a model; the per-frame model (when present) last.
     */
    val segmentModels: List<String>
        get() =
            segments.flatMap { s -> listOfNotNull(s.local?.model) + s.stats.mapNotNull { it.model } } +
                listOfNotNull(perFrame?.model)

    /**
     * Refuse a pass model whose inputs/outputs do not match this manifest (the Android layer calls it
     * with what the Interpreter reports): input count and dtypes, output count.
     */
    fun checkPassModel(
        pass: Int,
        inputDtypes: List<DType>,
        outputCount: Int,
    ) {
        if (pass !in passes.indices) throw ModelMismatchException("pass $pass: the manifest has ${passes.size} passes")
        if (inputDtypes.size != inputs.size) {
            throw ModelMismatchException(
                "pass model ${passes[pass].model} has ${inputDtypes.size} inputs, the manifest lists ${inputs.size}",
            )
        }
        inputDtypes.forEachIndexed { k, d ->
            if (d !=
                inputs[k].dtype
            ) {
                throw ModelMismatchException("input $k (${inputs[k].name}) is $d in the model, ${inputs[k].dtype} in the manifest")
            }
        }
        val want = if (passes[pass].final) outputs.size else passes[pass].statistics.size
        if (outputCount !=
            want
        ) {
            throw ModelMismatchException("pass model ${passes[pass].model} has $outputCount outputs, the manifest expects $want")
        }
    }

    /**
     * Refuse a segment model (number `model` of [segmentModels]) whose inputs/outputs do not match this
     * manifest: input count and dtypes (a store feed is its store's dtype, float16 read as float32; a
     * statistic or vector the manifest input's), output count.
     */
    fun checkSegmentModel(
        model: Int,
        inputDtypes: List<DType>,
        outputCount: Int,
    ) {
        val name =
            segmentModels.getOrNull(model) ?: throw ModelMismatchException("segment model $model: the manifest has ${segmentModels.size}")
        val (feeds, outs) =
            segments.firstNotNullOfOrNull { s ->
                s.local?.takeIf { it.modelIndex == model }?.let { it.inputs to it.outputs.size }
                    ?: s.stats.firstOrNull { it.modelIndex == model }?.let { it.inputs to it.outputs.size }
            } ?: perFrame!!.let { it.inputs to 1 }
        if (inputDtypes.size !=
            feeds.size
        ) {
            throw ModelMismatchException("$name has ${inputDtypes.size} inputs, the manifest feeds ${feeds.size}")
        }
        feeds.forEachIndexed { k, f ->
            val want =
                when (f.kind) {
                    "store" -> stores[f.index].dtype.let { if (it.startsWith("float")) DType.FLOAT32 else DType.of(it) }
                    "vector" -> inputs[vectorIndices[f.index]].dtype
                    "statistic" -> inputs[statistics[f.index].input].dtype
                    else -> inputs[imageIndex].dtype
                }
            if (inputDtypes[k] !=
                want
            ) {
                throw ModelMismatchException("$name input $k (${f.kind} ${f.index}) is ${inputDtypes[k]}, the manifest says $want")
            }
        }
        if (outputCount != outs) throw ModelMismatchException("$name has $outputCount outputs, the manifest expects $outs")
    }

    companion object {
        const val FORMAT = "isp_tf.tiling.manifest"
        const val VERSION = 1

        fun parse(text: String): TileManifest {
            val m = Json.parse(text).asObj("the manifest")
            if (m["format"] != FORMAT) throw ManifestException("not a tile manifest (no \"format\": \"$FORMAT\")")
            if ((m["version"] as? Number)?.toInt() !=
                VERSION
            ) {
                throw ManifestException("tile manifest version ${m["version"]}; this core reads version $VERSION")
            }
            val g = m.obj("geometry")
            val geometry =
                Geometry(
                    halo = g.int("halo"),
                    stride = g.int("stride"),
                    coreStep = g.int("core_step"),
                    align = g.int("align"),
                    outputScales = g["output_scales"].asInts("geometry.output_scales").toList(),
                    sizeMultiple = g.intOr("size_multiple", 1),
                    minSide = g.intOr("min_side", 1),
                )
            val inputs = m.list("inputs").mapIndexed { k, v -> tensorSpec(v.asObj("inputs[$k]"), k, isOutput = false) }
            val outputs = m.list("outputs").mapIndexed { k, v -> tensorSpec(v.asObj("outputs[$k]"), k, isOutput = true) }
            val passes =
                m.list("passes").mapIndexed { k, v ->
                    val p = v.asObj("passes[$k]")
                    PassSpec(p.string("model"), p["statistics"].asInts("passes[$k].statistics").toList(), p["final"] == true)
                }
            val stats =
                m.list("statistics").mapIndexed { k, v ->
                    val s = v.asObj("statistics[$k]")
                    StatisticSpec(
                        s.string("name"),
                        s.int("input"),
                        s.intOr("output", -1),
                        s.intOr("pass", -1),
                        s.int("jump"),
                        s.int("depth"),
                        s["shape"].asInts("statistics[$k].shape"),
                    )
                }
            val (segments, stores, perFrame) = parseSegments(m, inputs, outputs, stats)
            if (passes.isEmpty() && segments.isEmpty()) throw ManifestException("the manifest has neither passes nor segments")
            if (passes.isNotEmpty() && (!passes.last().final || passes.last().statistics.isNotEmpty())) {
                throw ManifestException("the last pass must be the final pass (no statistics maps)")
            }
            if (inputs.count { it.role == "image" } != 1) throw ManifestException("the manifest needs exactly one image input")
            if (outputs.isEmpty()) throw ManifestException("the manifest lists no outputs")
            passes.forEachIndexed { p, pass ->
                pass.statistics.forEachIndexed { j, k ->
                    val st = stats.getOrNull(k) ?: throw ManifestException("pass $p names statistic $k of ${stats.size}")
                    if (st.pass != p || st.output != j) throw ManifestException("statistic $k (${st.name}) is not output $j of pass $p")
                }
            }
            stats.forEach { st ->
                if (inputs.getOrNull(st.input)?.role !=
                    "statistic"
                ) {
                    throw ManifestException("statistic ${st.name} is fed to input ${st.input}, not a statistic input")
                }
                if (st.jump < 1) throw ManifestException("statistic ${st.name} has jump ${st.jump}")
            }
            val source = m["source"] as? Map<*, *>
            return TileManifest(
                geometry,
                m.int("core"),
                m["resizable"] != false,
                inputs,
                outputs,
                passes,
                stats,
                source?.get("model") as? String,
                source?.get("precision") as? String,
                segments,
                stores,
                perFrame,
            )
        }

        private fun feeds(
            v: Any?,
            what: String,
        ): List<Feed> =
            (v as? List<*> ?: throw ManifestException("$what is not a list")).mapIndexed { j, f ->
                val pair = f as? List<*>
                val kind = pair?.getOrNull(0) as? String
                val index = (pair?.getOrNull(1) as? Number)?.toInt()
                if (pair?.size != 2 || kind == null || index == null) throw ManifestException("$what[$j] is not [kind, index]")
                Feed(kind, index)
            }

        /** The manifest's `segments`, `stores` and `per_frame` (empty / null when absent), checked. */
        private fun parseSegments(
            m: Map<String, Any?>,
            inputs: List<TensorSpec>,
            outputs: List<TensorSpec>,
            stats: List<StatisticSpec>,
        ): Triple<List<SegmentSpec>, List<StoreSpec>, PerFrameSpec?> {
            val list = m["segments"] as? List<*> ?: return Triple(emptyList(), emptyList(), null)
            val stores =
                m.list("stores").mapIndexed { k, v ->
                    val s = v.asObj("stores[$k]")
                    val jump = s["jump"].asInts("stores[$k].jump")
                    if (jump.size != 2 || jump[0] < 1 || jump[1] < 1) throw ManifestException("stores[$k].jump is not [num, den]")
                    StoreSpec(
                        s["name"] as? String ?: "#$k",
                        jump[0],
                        jump[1],
                        s.int("channels"),
                        s.string("dtype"),
                        s.double("scale") ?: 0.0,
                        s.intOr("zero_point", 0),
                        s.int("producer"),
                        s.int("last"),
                        (s["output"] as? Number)?.toInt(),
                    )
                }
            var next = 0
            val segments =
                list.mapIndexed { k, v ->
                    val e = v.asObj("segments[$k]")
                    val local =
                        (e["local"] as? Map<*, *>)?.let { l ->
                            val o = l.asObj("segments[$k].local")
                            LocalSpec(
                                o.string("model"),
                                feeds(o["inputs"], "segments[$k].local.inputs"),
                                o["outputs"].asInts("segments[$k].local.outputs").toList(),
                                o.int("halo"),
                                next++,
                            )
                        }
                    val parts =
                        e.list("stats").mapIndexed { j, p ->
                            val o = p.asObj("segments[$k].stats[$j]")
                            val model = o["model"] as? String
                            StatsSpec(
                                model,
                                feeds(o["inputs"], "segments[$k].stats[$j].inputs"),
                                o["outputs"].asInts("segments[$k].stats[$j].outputs").toList(),
                                o.intOr("min_side", 1),
                                if (model != null) next++ else -1,
                            )
                        }
                    SegmentSpec(local, parts)
                }
            val vectors = inputs.count { it.role == "per_frame" }
            val perFrame =
                (m["per_frame"] as? Map<*, *>)?.let { p ->
                    val o = p.asObj("per_frame")
                    PerFrameSpec(o.string("model"), feeds(o["inputs"], "per_frame.inputs"), o.int("output_vector"), next++)
                }

            fun check(
                feed: Feed,
                where: String,
            ) {
                val ok =
                    when (feed.kind) {
                        "store" -> feed.index in stores.indices
                        "vector" -> feed.index in 0 until vectors
                        "statistic" -> feed.index in stats.indices
                        "image" -> where == "per_frame" && feed.index == 0
                        else -> false
                    }
                if (!ok) throw ManifestException("$where reads ${feed.kind} ${feed.index}: no such ${feed.kind}")
            }
            if (stores.isEmpty() || stores[0].producer != -1) throw ManifestException("store 0 must be the frame (producer -1)")
            segments.forEachIndexed { k, s ->
                s.local?.let { l ->
                    l.inputs.forEach { check(it, "segment $k") }
                    l.outputs.forEach { if (it !in 1 until stores.size) throw ManifestException("segment $k writes store $it") }
                    if (l.halo < 0) throw ManifestException("segment $k has halo ${l.halo}")
                }
                s.stats.forEach { p ->
                    p.inputs.forEach { check(it, "segment $k") }
                    p.outputs.forEach { if (it !in stats.indices) throw ManifestException("segment $k computes statistic $it") }
                    if (p.model == null && (p.inputs.size != 1 || p.inputs[0].kind != "store" || p.outputs.size != 1)) {
                        throw ManifestException("segment $k: a statistics part without a model needs one store input and one output")
                    }
                }
            }
            perFrame?.let { p ->
                p.inputs.forEach { check(it, "per_frame") }
                if (p.outputVector !in 0 until vectors) throw ManifestException("per_frame fills vector ${p.outputVector} of $vectors")
            }
            val outs = stores.mapNotNull { it.output }.sorted()
            if (outs !=
                outputs.indices.toList()
            ) {
                throw ManifestException("the stores hold outputs $outs, the manifest lists ${outputs.size}")
            }
            stores.forEach { s ->
                if (s.dtype !in listOf("float32", "float16", "int8", "uint8")) {
                    throw ManifestException("store ${s.name} is ${s.dtype}: this core keeps float32, float16 (as float32), int8 or uint8")
                }
            }
            return Triple(segments, stores, perFrame)
        }

        internal fun tensorSpec(
            t: Map<String, Any?>,
            position: Int,
            isOutput: Boolean,
        ): TensorSpec {
            val dtype = DType.of(t.string("dtype"))
            // "output_scale": output px per input px (outputs); "scale"/"zero_point": quantisation.
            val outScale = if (isOutput) t.intOr("output_scale", 1) else 1
            val quantScale = t.double("scale") ?: 0.0
            return TensorSpec(
                index = t.intOr("index", position),
                name = t["name"] as? String ?: "#$position",
                role = t["role"] as? String ?: "image",
                shape = t["shape"].asInts("shape of ${t["name"]}"),
                dtype = dtype,
                scale = quantScale,
                zeroPoint = t.intOr("zero_point", 0),
                outputScale = outScale,
            )
        }
    }
}

/** The JSON `export` writes beside each `.tflite`: its inputs and outputs with their quantisation. */
class ExportInfo(
    val model: String?,
    val precision: String?,
    val inputs: List<TensorSpec>,
    val outputs: List<TensorSpec>,
    /** The tile manifest's file name when the export was a `--tile N` export. */
    val manifest: String?,
) {
    companion object {
        fun parse(text: String): ExportInfo {
            val m = Json.parse(text).asObj("the export JSON")
            val ins = (m["inputs"] as? List<*>) ?: listOfNotNull(m["input"])
            val outs = m["outputs"] as? List<*> ?: throw ManifestException("export JSON without outputs")
            return ExportInfo(
                m["model"] as? String,
                m["precision"] as? String,
                ins.mapIndexed { k, v ->
                    TileManifest.tensorSpec(v.asObj("inputs[$k]"), k, isOutput = false).copy(
                        role =
                            if (k ==
                                0
                            ) {
                                "image"
                            } else {
                                "per_frame"
                            },
                    )
                },
                outs.mapIndexed { k, v -> TileManifest.tensorSpec(v.asObj("outputs[$k]"), k, isOutput = false).copy(role = "image") },
                (m["tile"] as? Map<*, *>)?.get("manifest") as? String,
            )
        }
    }
}
