"""TFLite export for Android NNAPI 1.2: conversion, validation, rewrites, parity, QAT.

* :mod:`isp_tf.export.convert` -- ``export_tflite(model, out, precision=..., input_size=...)``:
  fixed-shape FP32 / FP16 / full-INT8 ``.tflite`` plus a JSON beside it.
* :mod:`isp_tf.export.nnapi` -- ``check_nnapi(path)``: would every op be delegated at API 29?
* :mod:`isp_tf.export.rewrites` -- the same math with delegated ops (ELU, half-pixel resizes,
  pixel shuffle, instance norm) and the quantized-MEAN flatbuffer pass.
* :mod:`isp_tf.export.parity` -- run a ``.tflite`` under ai-edge-litert against Keras.
* :mod:`isp_tf.export.qat` -- ``quantize_model(model)`` for quantization-aware training.
* :mod:`isp_tf.export.flatbuffer` -- read/write ``.tflite`` files without TensorFlow.

Submodules are imported on use: ``nnapi`` and ``flatbuffer`` need no TensorFlow,
so ``export/check_nnapi.py`` starts in a fraction of a second.
"""
