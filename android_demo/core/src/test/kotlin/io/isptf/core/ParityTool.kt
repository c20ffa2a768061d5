package io.isptf.core

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** Raw little-endian float32 files: how the cross-language tests exchange arrays. */
fun writeF32(
    file: File,
    data: FloatArray,
) {
    val bb = ByteBuffer.allocate(4 * data.size).order(ByteOrder.LITTLE_ENDIAN)
    bb.asFloatBuffer().put(data)
    file.writeBytes(bb.array())
}

fun readF32(file: File): FloatArray {
    val bb = ByteBuffer.wrap(file.readBytes()).order(ByteOrder.LITTLE_ENDIAN)
    return FloatArray(bb.remaining() / 4).also { bb.asFloatBuffer().get(it) }
}

/**
 * Command-line entry of the JVM side of `tests/android`:
 *  - no arguments / `test`: run the unit tests ([CoreTests]);
 *  - `pack DNG OUT.f32`: read and pack a DNG, print `h w c pattern` and its metadata;
 *  - `whole EXPORT.json IN.f32 H W C OUT.f32 -- SERVER...`: one whole-frame call of a fixed-size export;
 *  - `tile MANIFEST IN.f32 H W C OUT.f32 [--repeat N] [--segments] -- SERVER...`: tiled inference with
 *    the model calls served by the SERVER command over a pipe: the statistics passes ([TiledExecutor]),
 *    or with `--segments` the segments ([SegmentExecutor]; serve them with `litert_server.py --segments`);
 *    prints `h w c tiles calls`, the timing, and `calls {JSON}`: per model index, the input shapes of
 *    every call of the last run.
 */
private fun q(s: String?): String = if (s == null) "null" else "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\""

private fun num(v: Double?): String = if (v == null) "null" else v.toString()

/** Read and pack one DNG; its metadata (or its error) as a JSON object. */
fun packOne(
    dng: File,
    out: File,
): String =
    try {
        val raw = DngReader.read(dng.readBytes(), dng.name)
        val packed = Bayer.pack(raw)
        writeF32(out, packed.data)
        val e = raw.exif
        "{\"shape\": [${packed.height}, ${packed.width}, ${packed.channels}], \"cfa_pattern\": ${q(raw.cfaPattern)}, " +
            "\"black_level\": [${raw.blackLevel.joinToString()}], \"white_level\": ${raw.whiteLevel}, " +
            "\"orientation\": ${raw.orientation}, \"iso\": ${num(e.iso)}, \"exposure_time\": ${num(e.exposureTime)}, " +
            "\"f_number\": ${num(e.fNumber)}, \"focal_length\": ${num(e.focalLength)}, " +
            "\"wb_gains\": [${raw.wbGains.joinToString()}], \"color_matrix\": " +
            "${raw.colorMatrixNearestD65?.joinToString(prefix = "[", postfix = "]") ?: "null"}, \"ifd\": ${q(raw.rawIfd)}}"
    } catch (e: IspCoreException) {
        "{\"error\": ${q(e::class.simpleName)}, \"message\": ${q(e.message)}}"
    }

fun main(args: Array<String>) {
    try {
        command(args)
    } catch (e: IspCoreException) {
        System.err.println("error: ${e::class.simpleName}: ${e.message}")
        kotlin.system.exitProcess(2)
    }
}

private fun command(args: Array<String>) {
    when (args.firstOrNull() ?: "test") {
        "test" -> {
            kotlin.system.exitProcess(CoreTests.runAll())
        }

        "pack" -> {
            // pack DNG OUT [DNG OUT ...]: one JSON line per file (its metadata, or the error class)
            for (k in 1 until args.size step 2) println(packOne(File(args[k]), File(args[k + 1])))
        }

        "whole" -> {
            // whole EXPORT.json IN.f32 H W C OUT.f32 -- SERVER...: one whole-frame call, quantised from the JSON
            val split = args.indexOf("--")
            val info = ExportInfo.parse(File(args[1]).readText())
            val (h, w, c) = args.sliceArray(3..5).map { it.toInt() }
            PipeModelRunner(args.sliceArray(split + 1 until args.size).toList()).use { runner ->
                val out = WholeFrameExecutor(info, runner).run(FloatImage(h, w, c, readF32(File(args[2]))))[0]
                writeF32(File(args[6]), out.data)
                println("${out.height} ${out.width} ${out.channels}")
            }
        }

        "tile" -> {
            val split = args.indexOf("--")
            val opts = args.sliceArray(1 until split)
            val server = args.sliceArray(split + 1 until args.size).toList()
            val manifestFile = File(opts[0])
            val manifest = TileManifest.parse(manifestFile.readText())
            val (h, w, c) = opts.sliceArray(2..4).map { it.toInt() }
            val repeat = opts.indexOf("--repeat").let { if (it < 0) 1 else opts[it + 1].toInt() }
            val segments = "--segments" in opts
            val frame = FloatImage(h, w, c, readF32(File(opts[1])))
            PipeModelRunner(server).use { pipe ->
                val log = ArrayList<Pair<Int, List<IntArray>>>()
                val runner =
                    ModelRunner { model, inputs ->
                        log.add(model to inputs.map { it.shape })
                        pipe.run(model, inputs)
                    }
                val seg = if (segments) SegmentExecutor(manifest, runner) else null
                val passes = if (segments) null else TiledExecutor(manifest, runner)
                val (outs, stats) =
                    Timing.measure(if (repeat > 1) 1 else 0, repeat) {
                        log.clear()
                        seg?.run(frame) ?: passes!!.run(frame)
                    }
                val out = outs!![0]
                writeF32(File(opts[5]), out.data)
                println("${out.height} ${out.width} ${out.channels} ${seg?.tiles ?: passes!!.tiles} ${seg?.calls ?: passes!!.calls}")
                println("timing $stats")
                val byModel =
                    log.groupBy({ it.first }, { it.second }).toSortedMap().entries.joinToString(", ", "{", "}") { (k, calls) ->
                        "\"$k\": " +
                            calls.joinToString(", ", "[", "]") { shapes -> shapes.joinToString(", ", "[", "]") { it.contentToString() } }
                    }
                println("calls $byModel")
            }
        }

        else -> {
            System.err.println(
                "usage: test | pack DNG OUT | whole EXPORT IN H W C OUT -- SERVER... | tile MANIFEST IN H W C OUT [--segments] -- SERVER...",
            )
            kotlin.system.exitProcess(2)
        }
    }
}
