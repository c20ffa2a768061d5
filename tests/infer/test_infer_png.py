"""8- and 16-bit PNG writing, checked against Pillow's decoder."""
import numpy as np
import pytest
from PIL import Image

from isp_tf.errors import InputShapeError
from isp_tf.infer.png import read_png, to_uint, write_png


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_roundtrip_and_pillow_agree(tmp_path, dtype, channels):
    rng = np.random.default_rng(channels)
    image = rng.integers(0, np.iinfo(dtype).max + 1, (37, 53, channels)).astype(dtype)
    path = tmp_path / "x.png"
    write_png(path, image)
    np.testing.assert_array_equal(read_png(path), image)
    with Image.open(path) as im:
        assert im.size == (53, 37)
        pil = np.asarray(im)
    if pil.ndim == 2:
        pil = pil[..., None]
    if dtype == np.uint16 and pil.dtype == np.uint8:  # Pillow reads 16-bit colour as 8-bit
        image = (image >> 8).astype(np.uint8)
    np.testing.assert_array_equal(pil.astype(np.int64), image.astype(np.int64))
    assert not [p for p in tmp_path.iterdir() if p.name != "x.png"]  # no temporary left


def test_to_uint_rounds_and_clips():
    x = np.array([-0.5, 0.0, 0.6 / 255, 0.5, 1.0, 7.0, np.nan], np.float32)
    np.testing.assert_array_equal(to_uint(x, 8), [0, 0, 1, 128, 255, 255, 0])
    np.testing.assert_array_equal(to_uint(x, 16)[[1, 3, 4]], [0, 32768, 65535])
    with pytest.raises(InputShapeError, match="8 or 16"):
        to_uint(x, 12)


def test_bad_images_are_refused(tmp_path):
    with pytest.raises(InputShapeError, match="uint8 or uint16"):
        write_png(tmp_path / "f.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputShapeError, match="must be"):
        write_png(tmp_path / "f.png", np.zeros((4, 4, 5), np.uint8))
    assert not list(tmp_path.iterdir())
