"""Training: recipes per model, the loop, checkpoints and resume, tf.distribute.

``python -m isp_tf.train --help`` for the command line; :func:`train` for
programmatic use.  ``python -m isp_tf.train.evaluate`` measures held-out
PSNR/SSIM of a model next to the classical renderer.
"""
from isp_tf.train.recipe import Recipe, RecipeError, qat_recipe, resolve_recipe

__all__ = ["Recipe", "RecipeError", "RunSettings", "qat_recipe", "read_run", "resolve_recipe", "train"]


def __getattr__(name):  # the loop imports TensorFlow; recipes do not
    if name in ("RunSettings", "read_run", "train"):
        from isp_tf.train import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
