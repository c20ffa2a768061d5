"""The one place that imports TensorFlow and Keras 2 (tf_keras).

tensorflow-model-optimization refuses Keras 3 models, and importing tfmot
flips ``TF_USE_LEGACY_KERAS`` itself, so import order would otherwise decide
which Keras a module gets.  Every TensorFlow-using module does::

    from isp_tf._keras import keras, tf
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["keras", "tf"]
