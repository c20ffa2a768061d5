"""isp_tf.data: synthetic RAW, dataset layouts and tf.data pipelines.

``build_dataset``, ``build_distributed_dataset`` and ``build_detection_dataset``
import TensorFlow on first use; :mod:`isp_tf.data.synthetic`,
:mod:`isp_tf.data.photos` and :mod:`isp_tf.data.layouts` do not.
"""
import importlib

_LAZY = {
    "build_dataset": "isp_tf.data.pipeline",
    "build_distributed_dataset": "isp_tf.data.pipeline",
    "count_examples": "isp_tf.data.pipeline",
    "build_detection_dataset": "isp_tf.data.rawnod",
    "find_examples": "isp_tf.data.layouts",
    "synthesize": "isp_tf.data.synthetic",
    "BUNDLED_PHOTOS": "isp_tf.data.photos",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'isp_tf.data' has no attribute {name!r}")
