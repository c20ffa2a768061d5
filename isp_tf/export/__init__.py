"""TFLite export for Android NNAPI 1.2: conversion, validation, rewrites, parity, QAT.

* :mod:`isp_tf.export.convert` -- ``export_tflite(model, out, precision=..., input_size=...)``:
  fixed-shape FP32 / FP16 / full-INT8 ``.tflite`` plus a JSON beside it.
* :mod:`isp_tf.export.nnapi` -- ``check_nnapi(path)``: would every op be delegated at API 29?
* :mod:`isp_tf.export.keras_rewrites` -- before conversion: the same math with delegated ops
  (ELU, half-pixel resizes, pixel shuffle, instance norm).
* :mod:`isp_tf.export.tflite_passes` -- after conversion: the quantized-MEAN alignment, int8
  requantize folding, tensor-name shortening.
* ``python -m isp_tf.export`` / ``python -m isp_tf.export.check_nnapi`` -- the commands
  (``export/export_to_tflite.py`` and ``export/check_nnapi.py`` run them).
* :mod:`isp_tf.export.parity` -- run a ``.tflite`` under ai-edge-litert against Keras.
* :mod:`isp_tf.export.qat` -- ``quantize_model(model)`` for quantization-aware training.
* :mod:`isp_tf.export.flatbuffer` -- read/write ``.tflite`` files without TensorFlow.

Submodules are imported on use: ``nnapi`` and ``flatbuffer`` need no TensorFlow,
so ``export/check_nnapi.py`` starts in a fraction of a second.
"""
