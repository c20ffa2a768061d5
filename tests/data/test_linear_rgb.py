"""The ``linear_rgb`` input kind (InvISP): exact bilinear demosaic in TF, camera white balance, clip."""
import numpy as np
import pytest

from isp_tf.data import build_dataset
from isp_tf.data.layouts import decode_example
from isp_tf.data.pipeline import INPUT_KINDS, collect_examples, demosaic_bilinear_rggb, linear_rgb_from_rggb
from isp_tf.raw import CFA_PATTERNS, demosaic_bilinear, rggb_offset


def reference(mosaic, wb):
    """numpy: gains / min(gains) on the RGGB sites, clip at 1, isp_tf.raw.demosaic_bilinear."""
    g = np.asarray(wb, np.float64)
    g = (g / g.min()).astype(np.float32)
    m = np.array(mosaic, np.float32)
    m[0::2, 0::2] *= g[0]
    m[0::2, 1::2] *= g[1]
    m[1::2, 0::2] *= g[1]
    m[1::2, 1::2] *= g[2]
    return demosaic_bilinear(np.minimum(m, 1.0), "RGGB")


def test_tf_demosaic_equals_numpy_exactly():
    rng = np.random.default_rng(0)
    batch = rng.random((3, 12, 18), dtype=np.float32)
    out = demosaic_bilinear_rggb(batch).numpy()
    assert out.shape == (3, 12, 18, 3)
    for m, o in zip(batch, out):
        np.testing.assert_array_equal(o, demosaic_bilinear(m, "RGGB"))
    flat = np.full((8, 10), 0.3, np.float32)  # mirrored borders keep a flat field flat
    np.testing.assert_allclose(demosaic_bilinear_rggb(flat).numpy(), 0.3, atol=1e-7)


def test_white_balance_clip_and_gamma():
    rng = np.random.default_rng(1)
    m = rng.random((16, 20), dtype=np.float32)
    wb = np.array([2.1, 1.0, 1.6], np.float32)
    np.testing.assert_array_equal(linear_rgb_from_rggb(m, wb).numpy(), reference(m, wb))
    out = linear_rgb_from_rggb(np.stack([m, m[::-1]]), np.stack([wb, wb[::-1]])).numpy()  # per-image gains
    np.testing.assert_array_equal(out[1], reference(m[::-1], wb[::-1]))
    assert out.min() >= 0 and out.max() == 1.0  # the gains push some sites into the clip
    np.testing.assert_allclose(linear_rgb_from_rggb(m, wb, gamma=2.2).numpy(), reference(m, wb) ** (1 / 2.2),
                               rtol=1e-5, atol=1e-6)


def test_pipeline_patch_is_the_demosaic_of_the_whole_mosaic_inside():
    """Evaluation crops are centred: x is the classical linear stage of the crop; its interior
    equals that of the whole image (the 1-px border mirrors the crop instead)."""
    assert "linear_rgb" in INPUT_KINDS
    p = 64
    ds = build_dataset("synthetic:2", split="val", patch_size=p, batch_size=2, input_kind="linear_rgb",
                       with_metadata=True)
    meta, rgb = next(iter(ds))
    x = meta["raw"].numpy()
    assert x.shape == (2, p, p, 3) and rgb.shape == (2, p, p, 3)
    for i, example in enumerate(collect_examples("synthetic:2", "val")):
        mosaic, pattern, _, vector = decode_example(example, p)
        wb = vector[:3]
        np.testing.assert_allclose(meta["wb_gains"][i].numpy(), wb)
        dy, dx = rggb_offset(CFA_PATTERNS[int(pattern)])  # the centred crop of crop_and_augment
        steps_h = (mosaic.shape[0] - dy - p) // 2 + 1
        steps_w = (mosaic.shape[1] - dx - p) // 2 + 1
        y0, x0 = dy + 2 * ((steps_h - 1) // 2), dx + 2 * ((steps_w - 1) // 2)
        crop = mosaic[y0:y0 + p, x0:x0 + p]
        np.testing.assert_array_equal(x[i], reference(crop, wb))
        # the whole mosaic, demosaiced in its own pattern, then cropped: same interior
        g = np.asarray(wb, np.float64) / np.min(wb)
        pat = CFA_PATTERNS[int(pattern)]
        whole = np.array(mosaic, np.float32)
        for sy in (0, 1):
            for sx in (0, 1):
                whole[sy::2, sx::2] *= np.float32(g["RGB".index(pat[2 * sy + sx])])
        whole = demosaic_bilinear(np.minimum(whole, 1.0), pat)[y0:y0 + p, x0:x0 + p]
        np.testing.assert_allclose(x[i, 1:-1, 1:-1], whole[1:-1, 1:-1], atol=1e-6)


@pytest.mark.parametrize("split", ["train", "val"])
def test_augmented_patches_match_the_bayer_kind(split):
    """Same seed, same crops and flips: linear_rgb is the demosaic of what 'bayer' yields."""
    kwargs = dict(split=split, patch_size=32, batch_size=2, seed=5, with_metadata=True)
    lin, rgb_lin = next(iter(build_dataset("synthetic:3", input_kind="linear_rgb", **kwargs)))
    bay, rgb_bay = next(iter(build_dataset("synthetic:3", input_kind="bayer", **kwargs)))
    np.testing.assert_array_equal(rgb_lin.numpy(), rgb_bay.numpy())
    for i in range(2):
        np.testing.assert_array_equal(lin["raw"][i].numpy(),
                                      reference(bay["raw"][i, ..., 0].numpy(), bay["wb_gains"][i].numpy()))
    x, _ = next(iter(build_dataset("synthetic:3", input_kind="linear_rgb", split=split, patch_size=32,
                                   batch_size=2, seed=5)))
    assert x.shape == (2, 32, 32, 3) and float(np.min(x)) >= 0 and float(np.max(x)) <= 1
