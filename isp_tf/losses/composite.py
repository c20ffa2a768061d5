"""A weighted sum of named loss terms, configured from a training recipe.

``CompositeLoss({"mse": 20, "vgg": 1, "ssim": 20})`` is PyNET's level-0 loss:
``20*MSE + VGG + 20*(1 - SSIM)``.  Terms (each one value per image):

=========  =====================================================
``mse``    mean squared error
``l1``     mean absolute error
``ssim``   ``1 - SSIM``
``ms_ssim`` ``1 - MS-SSIM`` (sides >= 161 px)
``vgg``    VGG-19 relu5_4 perceptual loss (needs the VGG weights file)
=========  =====================================================
"""
from __future__ import annotations

from typing import Dict, Mapping

from isp_tf._keras import tf
from isp_tf.errors import IspTfError
from isp_tf.losses import metrics


class LossConfigError(IspTfError, ValueError):
    """A loss specification names an unknown term or a non-numeric weight."""


def _one_minus(fn):
    return lambda y_true, y_pred: 1.0 - fn(y_true, y_pred)


_TERMS = {
    "mse": metrics.mse,
    "l1": metrics.l1,
    "ssim": _one_minus(metrics.ssim),
    "ms_ssim": _one_minus(metrics.ms_ssim),
}
LOSS_TERMS = tuple(_TERMS) + ("vgg",)


class CompositeLoss:
    """``loss(y_true, y_pred) -> (B,)``: sum of ``weight * term``.

    Args:
      weights: mapping term name -> weight (terms with weight 0 are dropped).
      vgg: where the VGG-19 weights are (file, folder or ``None`` for the
        default folder), or a ready :class:`~isp_tf.losses.vgg.VGGPerceptualLoss`.
        Only read when ``weights`` uses ``vgg``.
    """

    def __init__(self, weights: Mapping[str, float], vgg=None):
        if not isinstance(weights, Mapping) or not weights:
            raise LossConfigError(f"a loss needs at least one term out of {', '.join(LOSS_TERMS)}; got {weights!r}")
        self.weights: Dict[str, float] = {}
        for name, weight in weights.items():
            if name not in LOSS_TERMS:
                raise LossConfigError(f"unknown loss term {name!r}; known terms: {', '.join(LOSS_TERMS)}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise LossConfigError(f"loss term {name!r} has a non-numeric weight {weight!r}")
            if weight:
                self.weights[name] = float(weight)
        self._fns = {name: _TERMS.get(name) for name in self.weights}
        if "vgg" in self.weights:
            from isp_tf.losses.vgg import VGGPerceptualLoss

            self._fns["vgg"] = vgg if isinstance(vgg, VGGPerceptualLoss) else VGGPerceptualLoss(vgg)

    def terms(self, y_true, y_pred) -> Dict[str, tf.Tensor]:
        """Unweighted per-image value of every term."""
        return {name: fn(y_true, y_pred) for name, fn in self._fns.items()}

    def __call__(self, y_true, y_pred):
        terms = self.terms(y_true, y_pred)
        return tf.add_n([self.weights[name] * value for name, value in terms.items()])

    def __repr__(self):
        return "CompositeLoss(" + " + ".join(f"{w:g}*{n}" for n, w in self.weights.items()) + ")"
