"""Each dataset layout on a small fixture written in that exact layout."""
import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from data_fixtures import render_of_patch, small_raw

from isp_tf.data import build_dataset, build_detection_dataset
from isp_tf.data.layouts import find_examples, orient_raw
from isp_tf.data.rawnod import categories
from isp_tf.errors import DatasetError
from isp_tf.raw import apply_orientation, pack_bayer, read_raw, render_classical, rggb_offset, write_dng

P = 16


def all_elements(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x["raw"].numpy() if isinstance(x, dict) else x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def centre(full_packed):
    h, w = full_packed.shape[:2]
    y0, x0 = (h - P // 2) // 2, (w - P // 2) // 2
    return full_packed[y0:y0 + P // 2, x0:x0 + P // 2], (2 * y0, 2 * x0)


# --------------------------------------------------------------------------- (b) Zurich
@pytest.fixture(scope="module")
def zurich_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("zurich")
    for part, n in (("train", 3), ("test", 1)):
        (root / part / "huawei_raw").mkdir(parents=True)
        (root / part / "canon").mkdir(parents=True)
        for i in range(n):
            rng = np.random.default_rng(i + (10 if part == "test" else 0))
            iio.imwrite(root / part / "huawei_raw" / f"{i}.png", rng.integers(0, 1024, (24, 28), dtype=np.uint16))
            iio.imwrite(root / part / "canon" / f"{i}.jpg", rng.integers(0, 256, (24, 28, 3), dtype=np.uint8))
    return root


def test_zurich_reads_10bit_pngs_and_jpegs(zurich_dir):
    x, y = all_elements(build_dataset(f"zurich:{zurich_dir}", patch_size=P, batch_size=2, shuffle=False,
                                      augment=False, repeat=False, random_crop=False))
    assert x.shape == (3, P // 2, P // 2, 4) and y.shape == (3, P, P, 3)
    bayer = iio.imread(zurich_dir / "train" / "huawei_raw" / "1.png")
    expected, (y0, x0) = centre(pack_bayer(bayer.astype(np.float32) / 1023.0, "RGGB"))
    np.testing.assert_allclose(x[1], expected, rtol=1e-6)  # PyNET order: R at (0, 0); files in numeric order
    jpeg = iio.imread(zurich_dir / "train" / "canon" / "1.jpg")
    np.testing.assert_array_equal(y[1], jpeg[y0:y0 + P, x0:x0 + P] / np.float32(255))
    assert len(find_examples(f"zurich:{zurich_dir}", "val")) == 1  # val reads test/


def test_zurich_names_what_is_missing(zurich_dir, tmp_path):
    with pytest.raises(DatasetError, match="canon"):
        (tmp_path / "train" / "huawei_raw").mkdir(parents=True)
        find_examples(f"zurich:{tmp_path}", "train")
    (tmp_path / "train" / "canon").mkdir()
    iio.imwrite(tmp_path / "train" / "huawei_raw" / "7.png", np.zeros((8, 8), np.uint16))
    with pytest.raises(DatasetError, match="without a JPEG.*7"):
        find_examples(f"zurich:{tmp_path}", "train")


# --------------------------------------------------------------------------- (c) FiveK / InvISP
@pytest.fixture(scope="module")
def fivek_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fivek")
    cam = root / "NIKON_D700"
    (cam / "DNG").mkdir(parents=True)
    (cam / "RGB").mkdir()
    stems = ["a0001-dgw_001", "a0002-_DSC0002", "a0003-dgw_003"]
    for i, stem in enumerate(stems):
        raw = small_raw(40 + i, pattern="GRBG", orientation=6 if i == 1 else 1)
        write_dng(cam / "DNG" / f"{stem}.dng", raw.bayer, raw)
        # InvISP's target: the render in display orientation, saved as JPEG.
        render = apply_orientation(render_classical(raw), raw.orientation)
        iio.imwrite(cam / "RGB" / f"{stem}.jpg", np.round(render * 255).astype(np.uint8), quality=95)
    (root / "NIKON_D700_train.txt").write_text("\n".join(stems[:2]) + "\n")
    (root / "NIKON_D700_test.txt").write_text(stems[2] + "\n")
    return root


def test_fivek_splits_and_orientation(fivek_dir):
    assert [e.key.rsplit("/", 1)[1] for e in find_examples(f"fivek:{fivek_dir}", "train")] == [
        "a0001-dgw_001", "a0002-_DSC0002"]
    assert len(find_examples(f"fivek:{fivek_dir}/NIKON_D700", "test")) == 1  # a camera folder works too
    x, y = all_elements(build_dataset(f"fivek:{fivek_dir}", patch_size=P, batch_size=4, shuffle=False,
                                      augment=False, repeat=False, random_crop=False))
    assert x.shape == (2, P // 2, P // 2, 4)
    # The second DNG is stored rotated (orientation 6) and its JPEG is upright: the
    # mosaic was turned (and its CFA pattern with it) so that RAW and JPEG still agree.
    raw = orient_raw(read_raw(fivek_dir / "NIKON_D700" / "DNG" / "a0002-_DSC0002.dng"))
    assert raw.cfa_pattern != "GRBG"
    expected, (y0, x0) = centre(pack_bayer(raw))
    np.testing.assert_array_equal(x[1], expected)
    jpeg = iio.imread(fivek_dir / "NIKON_D700" / "RGB" / "a0002-_DSC0002.jpg") / np.float32(255)
    dy, dx = rggb_offset(raw.cfa_pattern)  # where pack_bayer's window starts
    np.testing.assert_array_equal(y[1], jpeg[dy + y0:dy + y0 + P, dx + x0:dx + x0 + P])
    # ...and the turned RAW (with its new CFA pattern) renders to what the JPEG shows.
    assert np.abs(render_classical(raw) - jpeg).mean() < 0.02


def test_fivek_names_missing_files(fivek_dir, tmp_path):
    (tmp_path / "CAM" / "DNG").mkdir(parents=True)
    (tmp_path / "CAM" / "RGB").mkdir()
    (tmp_path / "CAM_train.txt").write_text("img1\nimg2\n")
    with pytest.raises(DatasetError, match="img1, img2"):
        find_examples(f"fivek:{tmp_path}", "train")
    with pytest.raises(DatasetError, match="_test.txt"):
        find_examples(f"fivek:{tmp_path}", "test")


# --------------------------------------------------------------------------- (d) ParamISP
TILE = 32


def write_paramisp_instance(folder, raw, rgb16, extra=True):
    folder.mkdir(parents=True)
    h, w = raw.bayer.shape
    for i in range(0, h, TILE):
        for j in range(0, w, TILE):
            tifffile.imwrite(folder / f"raw-{TILE}-{i:05}-{j:05}.tif", raw.bayer[i:i + TILE, j:j + TILE, None])
            tifffile.imwrite(folder / f"rgb-{TILE}-{i:05}-{j:05}.tif", rgb16[i:i + TILE, j:j + TILE])
    codes = {"R": 0, "G": 1, "B": 2}
    meta = {"image_size": [h, w], "bayer_pattern": [[codes[c] for c in raw.cfa_pattern[:2]],
                                                    [codes[c] for c in raw.cfa_pattern[2:]]],
            "black_level": float(raw.black_level[0]), "white_level": raw.white_level,
            "white_balance": (np.asarray(raw.wb_gains) * 512).tolist(),  # unnormalised, as stored
            "camera_matrix": np.asarray(raw.cam_to_srgb).tolist(), "camera_name": "SAMSUNG/SM-G935F"}
    (folder / "metadata.json").write_text(json.dumps(meta))
    if extra:
        (folder / "extra.yml").write_text("focal_length: 21/5\nf_number: 17/10\nexposure_time: 1/100\n"
                                          "iso_sensitivity: 800\norientation: Horizontal (normal)\n")


@pytest.fixture(scope="module")
def paramisp_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("paramisp")
    raws = {}
    for i, name in enumerate(["20161107_233444-short", "20161109_130903-medium"]):
        raw = small_raw(60 + i, shape=(48, 56), pattern="GRBG")
        write_paramisp_instance(root / name, raw, np.round(render_classical(raw) * 65535).astype(np.uint16))
        raws[name] = raw
    (root / "datalist").mkdir()
    (root / "datalist" / "S7.train.txt").write_text("\n".join(raws) + "\n")
    (root / "datalist" / "S7.val.txt").write_text(next(iter(raws)) + "\n")
    return root, raws


def test_paramisp_tiles_metadata_and_alignment(paramisp_dir):
    root, raws = paramisp_dir
    ds = build_dataset(f"paramisp:{root}", patch_size=P, batch_size=2, seed=0, with_metadata=True)
    x, y = next(iter(ds))
    raw = next(iter(raws.values()))
    np.testing.assert_allclose(x["wb_gains"][0], raw.wb_gains, rtol=1e-5)
    np.testing.assert_allclose(x["exif"][0], [4.2, 1.7, 0.01, 800], rtol=1e-6)
    for packed, rgb in zip(x["raw"].numpy(), y.numpy()):  # augmented crops stay aligned
        errors = [np.abs(render_of_patch(packed, r) - rgb)[1:-1, 1:-1].max() for r in raws.values()]
        assert min(errors) < 2e-5, errors
    assert len(find_examples(f"paramisp:{root}", "val")) == 1
    # The tiles reassemble to the original mosaic.
    full, _ = find_examples(f"paramisp:{root}", "val")[0].load()
    np.testing.assert_array_equal(full.bayer, raw.bayer)
    assert full.cfa_pattern == "GRBG"


def test_paramisp_names_what_is_missing(paramisp_dir, tmp_path):
    with pytest.raises(DatasetError, match="datalist"):
        find_examples(f"paramisp:{tmp_path}", "test")
    root, raws = paramisp_dir
    name = next(iter(raws))
    broken = tmp_path / "broken"
    write_paramisp_instance(broken / name, raws[name], np.zeros((48, 56, 3), np.uint16))
    (broken / name / f"raw-{TILE}-00032-00032.tif").unlink()
    (broken / "S7.train.txt").write_text(name + "\n")
    with pytest.raises(DatasetError, match=r"raw tile \(32, 32\)"):
        build_dataset(f"paramisp:{broken}", patch_size=P)


# --------------------------------------------------------------------------- (e) RAW-NOD detection
@pytest.fixture(scope="module")
def rawnod_dir(tmp_path_factory):
    """Two dark DNGs with one white rectangle each; the COCO JSON frame is half the sensor size."""
    root = tmp_path_factory.mktemp("rawnod")
    (root / "images").mkdir()
    (root / "annotations" / "Cam").mkdir(parents=True)
    rects = {"a.dng": (16, 8, 40, 40), "b.dng": (30, 50, 60, 90)}  # y0, x0, y1, x1 in sensor pixels
    images, anns = [], []
    for k, (name, (y0, x0, y1, x1)) in enumerate(rects.items()):
        bayer = np.full((64, 96), 50, np.uint16)
        bayer[y0:y1, x0:x1] = 1000
        write_dng(root / "images" / name, bayer, {"cfa_pattern": "GBRG", "black_level": 50, "white_level": 1000})
        images.append({"id": f"IMG_{k}", "file_name": name, "width": 48, "height": 32})
        anns.append({"id": k, "image_id": f"IMG_{k}", "category_id": 3 if k else 1, "iscrowd": 0,
                     "bbox": [x0 / 2, y0 / 2, (x1 - x0) / 2, (y1 - y0) / 2]})
    anns.append({"id": 9, "image_id": "IMG_0", "category_id": 1, "iscrowd": 1, "bbox": [0, 0, 4, 4]})
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}, {"id": 3, "name": "car"}]}
    (root / "annotations" / "Cam" / "raw_new_Cam_train.json").write_text(json.dumps(coco))
    return root


@pytest.mark.parametrize("augment", [False, True])
def test_rawnod_boxes_cover_the_bright_object(rawnod_dir, augment):
    spec = f"rawnod:{rawnod_dir}"
    assert categories(spec) == [(1, "person"), (2, "bicycle"), (3, "car")]
    ds = build_detection_dataset(spec, image_size=(32, 48), batch_size=2, max_boxes=5, seed=0,
                                 augment=augment)
    flipped = set()
    for batch in ds.take(4):
        assert batch["raw"].shape == (2, 16, 24, 4)
        np.testing.assert_array_equal(batch["num_boxes"], [1, 1])  # crowd box skipped
        for raw, boxes, labels in zip(batch["raw"].numpy(), batch["boxes"].numpy(), batch["labels"].numpy()):
            assert labels[0] in (0, 2) and list(labels[1:]) == [-1] * 4
            assert not boxes[1:].any()
            y0, x0, y1, x1 = np.round(boxes[0] * [16, 24, 16, 24]).astype(int)
            inside = raw[y0 + 1:y1 - 1, x0 + 1:x1 - 1]
            outside = np.ones(raw.shape[:2], bool)
            outside[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1] = False
            assert inside.min() > 0.95 and raw[outside].max() < 0.05
            flipped.add(x0 > 12 if labels[0] == 0 else x0 < 12)
    assert flipped == ({False, True} if augment else {False})


def test_rawnod_errors(rawnod_dir, tmp_path):
    with pytest.raises(DatasetError, match="image_size"):
        build_detection_dataset(f"rawnod:{rawnod_dir}", image_size=(33, 48))
    with pytest.raises(DatasetError, match="image_size"):
        build_detection_dataset(f"rawnod:{rawnod_dir}", image_size="big")
    with pytest.raises(DatasetError, match="_val.json"):
        build_detection_dataset(f"rawnod:{rawnod_dir}", split="val")
    (tmp_path / "x_train.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "missing.NEF", "width": 4, "height": 4}], "annotations": [],
         "categories": []}))
    with pytest.raises(DatasetError, match="missing.NEF"):
        build_dataset(f"rawnod:{tmp_path}")
    with pytest.raises(DatasetError, match="cannot be mixed"):
        build_dataset([f"rawnod:{tmp_path}", "synthetic"])


# --------------------------------------------------------------------------- command line
def test_command_line_counts_checks_and_fails_cleanly(zurich_dir, tmp_path, capsys):
    from isp_tf.data.__main__ import main

    assert main([f"zurich:{zurich_dir}", "--check", "--patch-size", "16"]) == 0
    out = capsys.readouterr().out
    assert f"zurich:{zurich_dir} [train]: 3 pairs" in out and f"zurich:{zurich_dir} [test]: 1 pairs" in out
    assert main([f"zurich:{zurich_dir}", "--check", "--patch-size", "64"]) == 2
    assert "smaller than patch_size 64" in capsys.readouterr().err
    (tmp_path / "CAM" / "DNG").mkdir(parents=True)
    (tmp_path / "CAM" / "RGB").mkdir()
    (tmp_path / "CAM_test.txt").write_text("")
    assert main([f"fivek:{tmp_path}", "--splits", "test"]) == 2  # a list, but empty
    assert main([f"fivek:{tmp_path}", "--splits", "train"]) == 2  # no list at all
    capsys.readouterr()
    assert main(["zurich:/no/such/folder"]) == 2
    assert capsys.readouterr().err.count("error:") == 1


# --------------------------------------------------------------------------- orientation, every layout
@pytest.mark.parametrize("layout", ["paired", "fivek", "rendered"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_layout_orients_by_the_tag_for_all_eight_orientations(tmp_path, layout, orientation):
    # A square frame: flips, 180-degree turns and 90-degree turns all keep the shape,
    # so only the orientation tag can tell how the mosaic must be turned.
    raw = small_raw(70 + orientation, shape=(36, 36), pattern="GRBG", orientation=orientation)
    target = apply_orientation(render_classical(raw), orientation)  # display orientation
    target8 = np.round(np.clip(target, 0, 1) * 255).astype(np.uint8)
    if layout == "fivek":
        cam = tmp_path / "CAM"
        (cam / "DNG").mkdir(parents=True)
        (cam / "RGB").mkdir()
        dng = cam / "DNG" / "a.dng"
        iio.imwrite(cam / "RGB" / "a.jpg", target8, quality=98)
        (tmp_path / "CAM_train.txt").write_text("a\n")
        spec = f"fivek:{tmp_path}"
    else:
        dng = tmp_path / "a.dng"
        if layout == "paired":
            iio.imwrite(tmp_path / "a.png", target8)
        spec = f"{layout}:{tmp_path}"
    write_dng(dng, raw.bayer, raw)
    assert read_raw(dng).orientation == orientation
    (example,) = find_examples(spec, "train")
    loaded, rgb = example.load()
    # the mosaic is turned exactly as isp_tf.raw.apply_orientation turns it, CFA pattern following
    np.testing.assert_array_equal(loaded.bayer, apply_orientation(raw.bayer, orientation))
    assert loaded.orientation == 1
    assert loaded.cfa_pattern == orient_raw(read_raw(dng)).cfa_pattern
    assert rgb.shape[:2] == loaded.bayer.shape
    # ...and the pair is aligned: the turned RAW renders to what the target shows
    err = np.abs(render_classical(loaded) - rgb).mean()
    assert err < (0.03 if layout == "fivek" else 0.005), (layout, orientation, err)  # fivek: a JPEG
    if orientation != 1 and layout != "rendered":  # the unturned mosaic would not match
        unturned = render_classical(read_raw(dng))
        assert np.abs(unturned - rgb).mean() > 2 * err
