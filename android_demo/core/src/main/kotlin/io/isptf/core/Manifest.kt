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
    val output: Int,
    val pass: Int,
    val jump: Int,
    val depth: Int,
    val shape: IntArray,
)

/**
 * A tile manifest (`isp_tf.tiling.manifest`, format `isp_tf.tiling.manifest` version 1),
 * checked on parsing. The pass model files are named by [passes] (beside the manifest).
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
) {
    val imageIndex: Int get() = inputs.first { it.role == "image" }.index
    val vectorIndices: List<Int> get() = inputs.filter { it.role == "per_frame" }.map { it.index }

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
                        s.int("output"),
                        s.int("pass"),
                        s.int("jump"),
                        s.int("depth"),
                        s["shape"].asInts("statistics[$k].shape"),
                    )
                }
            if (passes.isEmpty() || !passes.last().final || passes.last().statistics.isNotEmpty()) {
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
            )
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
