"""Losses and image metrics: MSE, L1, PSNR, SSIM, MS-SSIM and the VGG-19 perceptual loss.

Every function returns one value per image (B,); see :mod:`isp_tf.losses.metrics`.
The VGG module (and its file lookup) is only imported when asked for.
"""
from isp_tf.losses.composite import LOSS_TERMS, CompositeLoss, LossConfigError
from isp_tf.losses.metrics import MS_SSIM_WEIGHTS, l1, ms_ssim, ms_ssim_min_side, mse, psnr, ssim

__all__ = ["CompositeLoss", "LOSS_TERMS", "LossConfigError", "MS_SSIM_WEIGHTS", "VGGPerceptualLoss",
           "l1", "ms_ssim", "ms_ssim_min_side", "mse", "psnr", "ssim"]


def __getattr__(name):
    if name == "VGGPerceptualLoss":
        from isp_tf.losses.vgg import VGGPerceptualLoss

        return VGGPerceptualLoss
    raise AttributeError(name)
