"""Inference: ``python -m isp_tf.infer`` and exact tiled execution.

* :class:`~isp_tf.tiling.TiledRunner`: run any image-to-image model on
  a frame tile by tile with output equal to whole-frame inference.
* :class:`~isp_tf.infer.pipeline.NetworkRenderer`,
  :class:`~isp_tf.infer.pipeline.ClassicalRenderer`,
  :func:`~isp_tf.infer.pipeline.render_file`: RAW file -> PNG.
* :func:`~isp_tf.infer.litert.load_renderer`, :class:`~isp_tf.infer.litert.LiteRtRenderer`:
  the default engine, the model exported once (cached) and run on LiteRT.
* :func:`~isp_tf.infer.png.write_png`: 8/16-bit PNGs, atomically.

Importing this package does not import TensorFlow (``--help`` stays fast);
the names above load their module on first use.
"""
import importlib

_LAZY = {
    "TiledRunner": "isp_tf.tiling.keras_executor", "analyze": "isp_tf.tiling.analysis",
    "NetworkRenderer": "isp_tf.infer.pipeline", "ClassicalRenderer": "isp_tf.infer.pipeline",
    "render_file": "isp_tf.infer.pipeline", "write_png": "isp_tf.infer.png",
    "read_png": "isp_tf.infer.png", "LiteRtRenderer": "isp_tf.infer.litert", "load_renderer": "isp_tf.infer.litert",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'isp_tf.infer' has no attribute {name!r}")
