"""Model registry and the methods.  ``create_model(name, **config)`` builds any of them."""
from isp_tf.models.registry import ModelSpec, available_models, create_model, get_spec

__all__ = ["ModelSpec", "available_models", "create_model", "get_spec"]
