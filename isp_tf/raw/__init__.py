"""isp_tf.raw: RAW photos as numpy arrays (no TensorFlow import).

Reading (:func:`read_raw` for any LibRaw format, :func:`read_bayer_array` for
bare mosaics), the :class:`RawImage` container, packing any Bayer pattern to
canonical ``[R, G1, G2, B]``, bilinear demosaicing, colour conversions, the
classical reference renderer and a DNG writer.
"""
from isp_tf.raw.bayer import (average_greens, cfa_masks, check_cfa_pattern, demosaic_bilinear,
                              normalize_bayer, pack_bayer, rggb_crop, rggb_offset, unpack_bayer)
from isp_tf.raw.color import (SRGB_TO_XYZ, XYZ_TO_SRGB, apply_color_matrix,
                              cam_to_srgb_from_xyz_to_cam, cam_to_xyz_from_cam_to_srgb,
                              linear_to_srgb, srgb_to_linear, xyz_to_cam_from_cam_to_xyz)
from isp_tf.raw.dng import write_dng
from isp_tf.raw.image import CFA_PATTERNS, Exif, RawImage
from isp_tf.raw.reader import RAW_EXTENSIONS, read_bayer_array, read_raw
from isp_tf.raw.render import apply_orientation, render_classical

__all__ = [
    "CFA_PATTERNS", "Exif", "RAW_EXTENSIONS", "RawImage", "read_raw", "read_bayer_array", "write_dng",
    "normalize_bayer", "rggb_offset", "rggb_crop", "pack_bayer", "unpack_bayer", "cfa_masks",
    "check_cfa_pattern", "demosaic_bilinear", "average_greens", "linear_to_srgb",
    "srgb_to_linear", "apply_color_matrix", "cam_to_srgb_from_xyz_to_cam",
    "cam_to_xyz_from_cam_to_srgb", "xyz_to_cam_from_cam_to_xyz", "SRGB_TO_XYZ",
    "XYZ_TO_SRGB", "render_classical", "apply_orientation",
]
