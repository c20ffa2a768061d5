"""Running exported models without TensorFlow: numpy + ai-edge-litert only.

* :mod:`isp_tf.runtime.session` -- :class:`LiteRtSession` (several inputs and
  outputs; runtimes ``xnnpack``, ``xnnpack-transient``, ``builtin``), the
  int8/uint8 boundary :func:`quantize` / :func:`dequantize`, and the one-shot
  :func:`make_interpreter` / :func:`run_tflite`.
* :mod:`isp_tf.runtime.frames` -- :data:`FRAME_SIZES`, :func:`parse_frame_size`.
* :mod:`isp_tf.runtime.metrics` -- :func:`psnr` (numpy, row-blocked).

Nothing here imports TensorFlow (the benchmark worker measures memory in a
process without it); ``ai_edge_litert`` is imported when a model is opened.
"""
from isp_tf.runtime.frames import FRAME_SIZES, frame_label, megapixels, parse_frame_size
from isp_tf.runtime.metrics import psnr
from isp_tf.runtime.session import (RUNTIMES, LiteRtSession, dequantize, make_interpreter, quantize,
                                    quiet_native_stderr, run_tflite)

__all__ = ["FRAME_SIZES", "RUNTIMES", "LiteRtSession", "dequantize", "frame_label", "make_interpreter",
           "megapixels", "parse_frame_size", "psnr", "quantize", "quiet_native_stderr", "run_tflite"]
