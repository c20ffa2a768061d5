package io.isptf.demo

import android.Manifest
import android.app.Activity
import android.content.ContentValues
import android.content.Intent
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.net.Uri
import android.os.Bundle
import android.os.Debug
import android.provider.MediaStore
import android.provider.OpenableColumns
import android.view.ViewGroup.LayoutParams.MATCH_PARENT
import android.view.ViewGroup.LayoutParams.WRAP_CONTENT
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.Spinner
import android.widget.Switch
import android.widget.TextView
import io.isptf.core.Bayer
import io.isptf.core.DngImage
import io.isptf.core.DngReader
import io.isptf.core.ExportInfo
import io.isptf.core.FloatImage
import io.isptf.core.IspCoreException
import io.isptf.core.ProcessMemory
import io.isptf.core.Render
import io.isptf.core.SegmentExecutor
import io.isptf.core.TileManifest
import io.isptf.core.TiledExecutor
import io.isptf.core.Timing
import io.isptf.core.WholeFrameExecutor
import io.isptf.core.centerCrop
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel
import java.util.concurrent.Executors

/**
 * The demo's one screen: pick a DNG (or use the bundled asset) and a model (a tile manifest with
 * its segment models -- or, for a manifest without segments, its pass models -- or a whole-frame
 * .tflite with its export JSON), choose the backend, run, look at
 * the result (or the classical render), save it to the gallery. All image logic is in `:core`;
 * this class only moves bytes between Android and the core.
 */
class MainActivity : Activity() {
    private val worker = Executors.newSingleThreadExecutor()
    private lateinit var status: TextView
    private lateinit var image: ImageView
    private lateinit var backend: Spinner
    private lateinit var classical: Switch
    private var dngUri: Uri? = null
    private var modelUris: List<Uri> = emptyList()
    private var modelBitmap: Bitmap? = null
    private var classicalBitmap: Bitmap? = null

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val column = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL }

        fun button(
            label: String,
            action: () -> Unit,
        ) = Button(this).apply {
            text = label
            setOnClickListener { action() }
            column.addView(this)
        }
        button("Pick a DNG (default: asset sample.dng)") { pick(REQUEST_DNG, multiple = false) }
        button("Capture RAW (Camera2 RAW_SENSOR -> DNG)") { captureRaw() }
        button("Pick the model: .tiling.json + its .tflite files, or .tflite + .json") { pick(REQUEST_MODEL, multiple = true) }
        backend =
            Spinner(this).apply {
                adapter = ArrayAdapter(this@MainActivity, android.R.layout.simple_spinner_dropdown_item, Backend.entries.map { it.label })
                column.addView(this)
            }
        classical =
            Switch(this).apply {
                text = "Show the classical render"
                setOnCheckedChangeListener { _, _ -> show() }
                column.addView(this)
            }
        button("Run (1 warm-up, median of $RUNS)") { run() }
        button("Save to the gallery") { save() }
        status = TextView(this).apply { column.addView(this) }
        image =
            ImageView(this).apply {
                adjustViewBounds = true
                column.addView(this, LinearLayout.LayoutParams(MATCH_PARENT, WRAP_CONTENT))
            }
        setContentView(ScrollView(this).apply { addView(column) })
        status.text = "Defaults: assets/sample.dng and assets/models/$DEFAULT_MANIFEST"
    }

    private fun pick(
        request: Int,
        multiple: Boolean,
    ) {
        val intent =
            Intent(Intent.ACTION_OPEN_DOCUMENT).apply {
                addCategory(Intent.CATEGORY_OPENABLE)
                type = "*/*"
                putExtra(Intent.EXTRA_ALLOW_MULTIPLE, multiple)
            }
        startActivityForResult(intent, request)
    }

    @Deprecated("Activity result API of the platform Activity")
    override fun onActivityResult(
        requestCode: Int,
        resultCode: Int,
        data: Intent?,
    ) {
        super.onActivityResult(requestCode, resultCode, data)
        if (resultCode != RESULT_OK || data == null) return
        val uris = data.clipData?.let { c -> List(c.itemCount) { c.getItemAt(it).uri } } ?: listOfNotNull(data.data)
        when (requestCode) {
            REQUEST_DNG -> dngUri = uris.firstOrNull()
            REQUEST_MODEL -> modelUris = uris
        }
        status.text =
            "DNG: ${dngUri?.let { nameOf(it) } ?: "asset"}; model files: ${modelUris.joinToString { nameOf(it) }.ifEmpty { "assets" }}"
    }

    @Suppress("DEPRECATION") // Activity.display needs API 30; minSdk is 29
    private fun captureRaw() {
        if (checkSelfPermission(Manifest.permission.CAMERA) != PackageManager.PERMISSION_GRANTED) {
            requestPermissions(arrayOf(Manifest.permission.CAMERA), REQUEST_CAMERA)
            return
        }
        val capture = RawCapture(this)
        if (capture.rawCameraId() == null) {
            status.text = "No RAW-capable back camera on this device (REQUEST_AVAILABLE_CAPABILITIES_RAW): pick a DNG instead."
            return
        }
        val rotation = windowManager.defaultDisplay.rotation
        status.text = "capturing a RAW frame..."
        worker.execute {
            val file =
                try {
                    capture.capture(rotation)
                } catch (e: NoRawCameraException) {
                    runOnUiThread { status.text = "No RAW-capable back camera: ${e.message}" }
                    return@execute
                } catch (e: Exception) {
                    runOnUiThread { status.text = "RAW capture failed: $e" }
                    return@execute
                }
            runOnUiThread {
                // the captured DNG goes through the same pipeline as a picked one
                dngUri = Uri.fromFile(file)
                status.text = "captured ${file.name} (${file.length() / 1000} kB)"
                run()
            }
        }
    }

    override fun onRequestPermissionsResult(
        requestCode: Int,
        permissions: Array<out String>,
        grantResults: IntArray,
    ) {
        super.onRequestPermissionsResult(requestCode, permissions, grantResults)
        if (requestCode != REQUEST_CAMERA) return
        if (grantResults.firstOrNull() == PackageManager.PERMISSION_GRANTED) {
            captureRaw()
        } else {
            status.text = "Capture RAW needs the camera permission."
        }
    }

    /** The chosen files by display name (or the assets). */
    private inner class ModelFiles {
        val byName: Map<String, () -> ByteBuffer> =
            if (modelUris.isEmpty()) {
                assets.list("models").orEmpty().associateWith { name -> { mapAsset("models/$name") } }
            } else {
                modelUris.associate { uri -> nameOf(uri) to { readDirect(uri) } }
            }

        fun text(name: String): String = Charsets.UTF_8.decode(byName.getValue(name)()).toString()
    }

    private fun run() {
        val chosen = Backend.entries[backend.selectedItemPosition]
        status.text = "running on ${chosen.label}..."
        worker.execute {
            val report =
                try {
                    process(chosen)
                } catch (e: IspCoreException) {
                    "error: ${e.message}"
                } catch (e: IllegalArgumentException) {
                    "error: ${e.message}"
                } catch (e: RuntimeException) {
                    // LiteRT reports delegate and op failures this way
                    "error (LiteRT): ${e.message}"
                }
            runOnUiThread {
                status.text = report
                show()
            }
        }
    }

    private fun process(chosen: Backend): String {
        val bytes =
            dngUri?.let { uri -> contentResolver.openInputStream(uri)!!.use { it.readBytes() } }
                ?: assets.open("sample.dng").use { it.readBytes() }
        val raw = DngReader.read(bytes, dngUri?.let { nameOf(it) } ?: "sample.dng")
        val packed = Bayer.pack(raw)
        classicalBitmap = bitmapOf(Render.classical(packed, raw), raw)
        val files = ModelFiles()
        val manifestName = files.byName.keys.firstOrNull { it.endsWith(".tiling.json") }
        val heapBefore = Debug.getNativeHeapAllocatedSize()
        val (out, stats, what) =
            if (manifestName != null) {
                val manifest = TileManifest.parse(files.text(manifestName))
                // segments (every op once per tile) when the manifest has them; else the statistics passes
                val segments = manifest.hasSegments
                val names = if (segments) manifest.segmentModels else manifest.passes.map { it.model }
                val models =
                    names.map { name ->
                        files.byName[name]?.invoke()
                            ?: throw IllegalArgumentException("model $name named by $manifestName was not picked")
                    }
                LiteRtRunner(models, chosen).use { runner ->
                    names.indices.forEach { k ->
                        val (dtypes, outputs) = runner.describe(k)
                        if (segments) manifest.checkSegmentModel(k, dtypes, outputs) else manifest.checkPassModel(k, dtypes, outputs)
                    }
                    if (segments) {
                        val exec = SegmentExecutor(manifest, runner)
                        val (o, s) = Timing.measure(1, RUNS) { exec.run(packed)[0] }
                        Triple(o!!, s, "${exec.tiles} tiles x ${manifest.segments.size} segments (${names.size} models)")
                    } else {
                        val exec = TiledExecutor(manifest, runner)
                        val (o, s) = Timing.measure(1, RUNS) { exec.run(packed)[0] }
                        Triple(o!!, s, "${exec.tiles} tiles x ${manifest.passes.size} passes")
                    }
                }
            } else {
                val jsonName =
                    files.byName.keys.firstOrNull { it.endsWith(".json") }
                        ?: throw IllegalArgumentException("pick a .tiling.json or an export .json")
                val info = ExportInfo.parse(files.text(jsonName))
                val tflite = jsonName.removeSuffix(".json") + ".tflite"
                val model = files.byName[tflite]?.invoke() ?: throw IllegalArgumentException("$tflite (beside $jsonName) was not picked")
                val (_, h, w, _) = info.inputs[0].shape.toList()
                val frame = centerCrop(packed, h, w)
                LiteRtRunner(listOf(model), chosen).use { runner ->
                    val exec = WholeFrameExecutor(info, runner)
                    val (o, s) = Timing.measure(1, RUNS) { exec.run(frame)[0] }
                    Triple(o!!, s, "whole frame ${h}x$w (centre crop)")
                }
            }
        modelBitmap = bitmapOf(out, raw)
        val peak = ProcessMemory.peakRssBytes()?.let { "%.0f MB".format(it / 1e6) } ?: "n/a"
        val native = "%.0f MB".format((Debug.getNativeHeapAllocatedSize() - heapBefore) / 1e6)
        return "${raw.width}x${raw.height} ${raw.cfaPattern}, ISO ${raw.exif.iso ?: "?"}, ${chosen.label}, $what\n" +
            "$stats\npeak RSS $peak (native heap now +$native)"
    }

    private fun bitmapOf(
        img: FloatImage,
        raw: DngImage,
    ): Bitmap {
        val (pixels, w, h) = Render.orient(Render.toArgb(img), img.width, img.height, raw.orientation)
        return Bitmap.createBitmap(pixels, w, h, Bitmap.Config.ARGB_8888)
    }

    private fun show() {
        image.setImageBitmap(if (classical.isChecked) classicalBitmap else modelBitmap)
    }

    private fun save() {
        val bitmap = (if (classical.isChecked) classicalBitmap else modelBitmap) ?: return
        val values =
            ContentValues().apply {
                put(MediaStore.Images.Media.DISPLAY_NAME, "isp_tf_${System.currentTimeMillis()}.png")
                put(MediaStore.Images.Media.MIME_TYPE, "image/png")
                put(MediaStore.Images.Media.RELATIVE_PATH, "Pictures/isp_tf")
                put(MediaStore.Images.Media.IS_PENDING, 1)
            }
        val uri = contentResolver.insert(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, values) ?: return
        contentResolver.openOutputStream(uri)?.use { bitmap.compress(Bitmap.CompressFormat.PNG, 100, it) }
        values.clear()
        values.put(MediaStore.Images.Media.IS_PENDING, 0)
        contentResolver.update(uri, values, null, null)
        status.append("\nsaved to Pictures/isp_tf")
    }

    private fun nameOf(uri: Uri): String =
        contentResolver.query(uri, arrayOf(OpenableColumns.DISPLAY_NAME), null, null, null)?.use { c ->
            if (c.moveToFirst()) c.getString(0) else null
        } ?: uri.lastPathSegment.orEmpty()

    private fun readDirect(uri: Uri): ByteBuffer {
        val bytes = contentResolver.openInputStream(uri)!!.use { it.readBytes() }
        return ByteBuffer
            .allocateDirect(bytes.size)
            .order(ByteOrder.nativeOrder())
            .put(bytes)
            .also { it.rewind() }
    }

    /** Memory-maps an uncompressed asset (see noCompress in app/build.gradle.kts). */
    private fun mapAsset(name: String): ByteBuffer =
        assets.openFd(name).use { fd ->
            FileInputStream(fd.fileDescriptor).channel.use { ch ->
                ch.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
            }
        }

    override fun onDestroy() {
        worker.shutdownNow()
        super.onDestroy()
    }

    private companion object {
        const val REQUEST_DNG = 1
        const val REQUEST_MODEL = 2
        const val REQUEST_CAMERA = 3
        const val RUNS = 5
        const val DEFAULT_MANIFEST = "microisp_tile.tiling.json"
    }
}
