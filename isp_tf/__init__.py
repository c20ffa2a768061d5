"""isp_tf: neural camera ISPs in TensorFlow/Keras.

Importing this package is cheap: TensorFlow is only imported by the
subpackages that need it (``layers``, ``models``, ``losses``, ``train``,
``infer``, ``export``).  ``isp_tf.raw`` never imports TensorFlow.
"""
__version__ = "0.1.0"
