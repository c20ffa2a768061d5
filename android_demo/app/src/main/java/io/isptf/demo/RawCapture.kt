package io.isptf.demo

import android.Manifest
import android.annotation.SuppressLint
import android.content.Context
import android.content.pm.PackageManager
import android.graphics.ImageFormat
import android.hardware.camera2.CameraCaptureSession
import android.hardware.camera2.CameraCharacteristics
import android.hardware.camera2.CameraDevice
import android.hardware.camera2.CameraManager
import android.hardware.camera2.CameraMetadata
import android.hardware.camera2.CaptureFailure
import android.hardware.camera2.CaptureRequest
import android.hardware.camera2.CaptureResult
import android.hardware.camera2.DngCreator
import android.hardware.camera2.TotalCaptureResult
import android.hardware.camera2.params.OutputConfiguration
import android.hardware.camera2.params.SessionConfiguration
import android.media.ExifInterface
import android.media.Image
import android.media.ImageReader
import android.os.Handler
import android.os.HandlerThread
import android.view.Surface
import java.io.File
import java.util.concurrent.CompletableFuture
import java.util.concurrent.Executor
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import java.util.concurrent.TimeoutException

/** The device has no back camera that reports REQUEST_AVAILABLE_CAPABILITIES_RAW. */
class NoRawCameraException : Exception("this device has no back camera with RAW capture (REQUEST_AVAILABLE_CAPABILITIES_RAW)")

/**
 * One Camera2 RAW_SENSOR frame from the back RAW-capable camera, written by [DngCreator] as an
 * uncompressed 16-bit DNG (CFA, BlackLevel, WhiteLevel, AsShotNeutral, ColorMatrix: what the core's
 * DngReader reads). [capture] blocks: call it off the main thread. Camera callbacks run on a
 * private HandlerThread.
 */
class RawCapture(
    private val context: Context,
) {
    private val manager = context.getSystemService(CameraManager::class.java)

    /** The first back camera that reports the RAW capability, or null. */
    fun rawCameraId(): String? =
        manager.cameraIdList.firstOrNull { id ->
            val c = manager.getCameraCharacteristics(id)
            c.get(CameraCharacteristics.LENS_FACING) == CameraMetadata.LENS_FACING_BACK &&
                c.get(CameraCharacteristics.REQUEST_AVAILABLE_CAPABILITIES)?.contains(
                    CameraMetadata.REQUEST_AVAILABLE_CAPABILITIES_RAW,
                ) == true
        }

    /**
     * Captures one frame at the largest RAW_SENSOR size and returns the DNG written to the cache.
     * [displayRotation] is the display's Surface.ROTATION_* value (for the DNG's Orientation tag).
     */
    @SuppressLint("MissingPermission") // checked just below
    fun capture(displayRotation: Int): File {
        if (context.checkSelfPermission(Manifest.permission.CAMERA) != PackageManager.PERMISSION_GRANTED) {
            throw SecurityException("the CAMERA permission was not granted")
        }
        val id = rawCameraId() ?: throw NoRawCameraException()
        val chars = manager.getCameraCharacteristics(id)
        val size =
            chars
                .get(CameraCharacteristics.SCALER_STREAM_CONFIGURATION_MAP)
                ?.getOutputSizes(ImageFormat.RAW_SENSOR)
                ?.maxByOrNull { it.width.toLong() * it.height }
                ?: throw NoRawCameraException()
        val thread = HandlerThread("RawCapture").apply { start() }
        val handler = Handler(thread.looper)
        val reader = ImageReader.newInstance(size.width, size.height, ImageFormat.RAW_SENSOR, MAX_IMAGES)
        // Keeps only the newest frame: the warm-up frames are dropped, the captured one is the last.
        val images = LinkedBlockingQueue<Image>()
        reader.setOnImageAvailableListener({ r ->
            // acquireNextImage throws once the reader is closed (a callback still queued at the end)
            val next = runCatching { r.acquireNextImage() }.getOrNull() ?: return@setOnImageAvailableListener
            images.add(next)
            while (images.size > 1) images.poll()?.close()
        }, handler)
        var device: CameraDevice? = null
        var session: CameraCaptureSession? = null
        var image: Image? = null
        try {
            device = open(id, handler)
            session = configure(device, reader, handler)
            val request =
                device.createCaptureRequest(CameraDevice.TEMPLATE_STILL_CAPTURE).apply { addTarget(reader.surface) }.build()
            converge(session, request, handler)
            val result = CompletableFuture<TotalCaptureResult>()
            session.capture(request, callback(result), handler)
            val totalResult = result.get(TIMEOUT_S, TimeUnit.SECONDS)
            val timestamp = totalResult.get(CaptureResult.SENSOR_TIMESTAMP)
            val frame = awaitImage(images, timestamp)
            image = frame
            val file = File(context.cacheDir, "raw_capture_${System.currentTimeMillis()}.dng")
            DngCreator(chars, totalResult).use { dng ->
                dng.setOrientation(exifOrientation(chars, displayRotation))
                file.outputStream().buffered().use { dng.writeImage(it, frame) }
            }
            return file
        } finally {
            image?.close()
            session?.close()
            device?.close()
            reader.setOnImageAvailableListener(null, null)
            images.forEach { it.close() }
            reader.close()
            thread.quitSafely()
        }
    }

    /** The Image paired with its TotalCaptureResult by the sensor timestamp (earlier frames are closed). */
    private fun awaitImage(
        images: LinkedBlockingQueue<Image>,
        timestamp: Long?,
    ): Image {
        while (true) {
            val next = images.poll(TIMEOUT_S, TimeUnit.SECONDS) ?: throw TimeoutException("no RAW image for the capture result")
            if (next.timestamp == timestamp) return next
            next.close()
        }
    }

    private fun open(
        id: String,
        handler: Handler,
    ): CameraDevice {
        val opened = CompletableFuture<CameraDevice>()
        manager.openCamera(
            id,
            object : CameraDevice.StateCallback() {
                override fun onOpened(camera: CameraDevice) {
                    opened.complete(camera)
                }

                override fun onDisconnected(camera: CameraDevice) {
                    camera.close()
                    opened.completeExceptionally(IllegalStateException("camera $id disconnected"))
                }

                override fun onError(
                    camera: CameraDevice,
                    error: Int,
                ) {
                    camera.close()
                    opened.completeExceptionally(IllegalStateException("camera $id error $error"))
                }
            },
            handler,
        )
        try {
            return opened.get(TIMEOUT_S, TimeUnit.SECONDS)
        } catch (e: TimeoutException) {
            opened.thenAccept { it.close() } // a late onOpened must not leak the device
            throw e
        }
    }

    private fun configure(
        device: CameraDevice,
        reader: ImageReader,
        handler: Handler,
    ): CameraCaptureSession {
        val configured = CompletableFuture<CameraCaptureSession>()
        val config =
            SessionConfiguration(
                SessionConfiguration.SESSION_REGULAR,
                listOf(OutputConfiguration(reader.surface)),
                Executor { handler.post(it) },
                object : CameraCaptureSession.StateCallback() {
                    override fun onConfigured(session: CameraCaptureSession) {
                        configured.complete(session)
                    }

                    override fun onConfigureFailed(session: CameraCaptureSession) {
                        configured.completeExceptionally(IllegalStateException("RAW capture session configuration failed"))
                    }
                },
            )
        device.createCaptureSession(config)
        return configured.get(TIMEOUT_S, TimeUnit.SECONDS)
    }

    /** Repeats the request until auto-exposure settles (or [WARMUP_FRAMES] frames), then stops. */
    private fun converge(
        session: CameraCaptureSession,
        request: CaptureRequest,
        handler: Handler,
    ) {
        val done = CompletableFuture<TotalCaptureResult>()
        var frames = 0
        val settled =
            object : CameraCaptureSession.CaptureCallback() {
                override fun onCaptureCompleted(
                    s: CameraCaptureSession,
                    r: CaptureRequest,
                    result: TotalCaptureResult,
                ) {
                    val ae = result.get(CaptureResult.CONTROL_AE_STATE)
                    frames++
                    if (ae == null || ae == CaptureResult.CONTROL_AE_STATE_CONVERGED ||
                        ae == CaptureResult.CONTROL_AE_STATE_FLASH_REQUIRED || frames >= WARMUP_FRAMES
                    ) {
                        done.complete(result)
                    }
                }
            }
        session.setRepeatingRequest(request, settled, handler)
        try {
            done.get(TIMEOUT_S, TimeUnit.SECONDS)
        } catch (_: TimeoutException) {
            // capture anyway with whatever exposure 3A reached
        } finally {
            session.stopRepeating()
        }
    }

    private fun callback(result: CompletableFuture<TotalCaptureResult>) =
        object : CameraCaptureSession.CaptureCallback() {
            override fun onCaptureCompleted(
                s: CameraCaptureSession,
                r: CaptureRequest,
                total: TotalCaptureResult,
            ) {
                result.complete(total)
            }

            override fun onCaptureFailed(
                s: CameraCaptureSession,
                r: CaptureRequest,
                failure: CaptureFailure,
            ) {
                result.completeExceptionally(IllegalStateException("RAW capture failed (reason ${failure.reason})"))
            }
        }

    /** The EXIF orientation that shows the frame upright: sensor orientation minus display rotation (back camera). */
    private fun exifOrientation(
        chars: CameraCharacteristics,
        displayRotation: Int,
    ): Int {
        val sensor = chars.get(CameraCharacteristics.SENSOR_ORIENTATION) ?: 0
        val display =
            when (displayRotation) {
                Surface.ROTATION_90 -> 90
                Surface.ROTATION_180 -> 180
                Surface.ROTATION_270 -> 270
                else -> 0
            }
        return when ((sensor - display + 360) % 360) {
            90 -> ExifInterface.ORIENTATION_ROTATE_90
            180 -> ExifInterface.ORIENTATION_ROTATE_180
            270 -> ExifInterface.ORIENTATION_ROTATE_270
            else -> ExifInterface.ORIENTATION_NORMAL
        }
    }

    private companion object {
        const val MAX_IMAGES = 3
        const val TIMEOUT_S = 5L
        const val WARMUP_FRAMES = 30
    }
}
