"""tf.data pipeline: alignment, CFA-consistent augmentation, seeds, cache, sharding, splits."""
import numpy as np
import pytest

from isp_tf._keras import tf
from isp_tf.data import build_dataset, build_distributed_dataset
from isp_tf.data.pipeline import crop_and_augment, pack_rggb
from isp_tf.errors import DatasetError
from isp_tf.raw import CFA_PATTERNS, pack_bayer, read_raw, render_classical, write_dng

from data_fixtures import locate, render_of_patch, small_raw

P = 16


def batches(ds, n):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
@pytest.mark.parametrize("augment", [False, True])
def test_rgb_crop_is_the_render_of_its_raw_crop(rendered_dirs, pattern, augment):
    folder, _, _ = rendered_dirs[pattern]
    raw = read_raw(next(folder.glob("*.dng")))
    target = render_classical(raw)
    seen = set()
    for x, y in batches(build_dataset(f"rendered:{folder}", patch_size=P, batch_size=8, seed=3,
                                      augment=augment), 2):
        assert x.shape == (8, P // 2, P // 2, 4) and y.shape == (8, P, P, 3)
        for packed, rgb in zip(x, y):
            # Bilinear demosaicing sees one pixel around: only the outer ring may differ.
            np.testing.assert_allclose(render_of_patch(packed, raw)[1:-1, 1:-1], rgb[1:-1, 1:-1], atol=2e-6)
            matches = locate(packed, rgb, raw, target)
            assert len(matches) == 1, matches  # one place, CFA colours consistent
            seen.add(matches[0][0])
    # Without augmentation only the identity; with it, flips and rotations occur.
    assert seen == {0} if not augment else len(seen) >= 5


def test_patch_as_large_as_the_image_keeps_the_phase():
    from isp_tf.raw import normalize_bayer

    raw = small_raw(5, shape=(P + 2, P + 2), pattern="BGGR")  # red at (1, 1): no room for a margin
    full = pack_bayer(raw)
    m = tf.constant(normalize_bayer(raw))
    rgb = tf.constant(np.repeat(normalize_bayer(raw)[..., None], 3, axis=-1))
    results = set()
    for s in range(12):
        rggb, _ = crop_and_augment(m, tf.constant(CFA_PATTERNS.index("BGGR")), rgb,
                                   tf.constant([s, 0], tf.int64), patch_size=P, augment=True, random_crop=True)
        packed = pack_rggb(rggb).numpy()
        if np.array_equal(packed, full):
            results.add("identity")
        elif np.array_equal(packed, full.transpose(1, 0, 2)[..., [0, 2, 1, 3]]):
            results.add("transpose")  # transposing an RGGB mosaic swaps the two greens, R/B stay
        else:
            raise AssertionError("a transform broke the Bayer phase")
    assert results == {"identity", "transpose"}


def test_same_seed_same_batches_other_seed_other_batches(rendered_dirs):
    spec = f"rendered:{rendered_dirs['GRBG'][0]}"
    a = batches(build_dataset(spec, patch_size=P, batch_size=4, seed=7), 3)
    b = batches(build_dataset(spec, patch_size=P, batch_size=4, seed=7), 3)
    c = batches(build_dataset(spec, patch_size=P, batch_size=4, seed=8), 3)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not all(np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


@pytest.fixture(scope="module")
def paired_dir(tmp_path_factory):
    """Six DNG + 16-bit TIFF pairs (target = classical render), mixed CFA patterns."""
    import tifffile

    folder = tmp_path_factory.mktemp("paired")
    for i in range(6):
        raw = small_raw(100 + i, pattern=CFA_PATTERNS[i % 4])
        write_dng(folder / f"p{i}.dng", raw.bayer, raw)
        tifffile.imwrite(folder / f"p{i}.tif", np.round(render_classical(raw) * 65535).astype(np.uint16))
    return folder


def test_cache_on_off_and_file_cache_give_the_same_data(paired_dir, tmp_path):
    spec = f"paired:{paired_dir}"
    runs = [batches(build_dataset(spec, patch_size=P, batch_size=2, seed=1, cache=c), 8)
            for c in (True, False, str(tmp_path / "cache"))]
    for other in runs[1:]:
        for (x0, y0), (x1, y1) in zip(runs[0], other):
            np.testing.assert_array_equal(x0, x1)
            np.testing.assert_array_equal(y0, y1)


def test_paired_folder_aligned_and_held_out(paired_dir):
    train = build_dataset(f"paired:{paired_dir}", patch_size=P, batch_size=5, seed=0)
    x, y = batches(train, 1)[0]
    # The 16-bit TIFF target is the render of the DNG: quantisation 1/65535 only.
    assert x.shape == (5, P // 2, P // 2, 4)
    val = batches(build_dataset(f"paired:{paired_dir}", split="val", patch_size=P, batch_size=4), 5)
    assert sum(len(v[0]) for v in val) == 1  # 6 pairs: every 10th from the first is held out
    raw = read_raw(paired_dir / "p0.dng")
    np.testing.assert_allclose(render_of_patch(val[0][0][0], raw)[1:-1, 1:-1], val[0][1][0][1:-1, 1:-1],
                               atol=1e-4)


def test_validation_is_deterministic_centre_crops(paired_dir):
    spec = f"paired:{paired_dir}"
    ds = build_dataset(spec, split="val", patch_size=P, batch_size=2)
    first, second = batches(ds, 10), batches(ds, 10)
    assert len(first) == 1
    np.testing.assert_array_equal(first[0][0], second[0][0])
    raw = read_raw(paired_dir / "p0.dng")  # RGGB, 36x44: centred red-aligned window
    full = pack_bayer(raw)
    h, w = full.shape[:2]
    y0, x0 = (h - P // 2) // 2, (w - P // 2) // 2
    np.testing.assert_array_equal(first[0][0][0], full[y0:y0 + P // 2, x0:x0 + P // 2])


def test_shards_are_disjoint_and_cover_everything(paired_dir):
    spec = f"paired:{paired_dir}"

    def shard(i, n):
        ctx = tf.distribute.InputContext(num_input_pipelines=n, input_pipeline_id=i, num_replicas_in_sync=n)
        ds = build_dataset(spec, patch_size=P, batch_size=n, seed=0, augment=False, repeat=False,
                           shuffle=False, random_crop=False, input_context=ctx)
        return {x.tobytes() for xb, _ in batches(ds, 100) for x in xb}

    whole = shard(0, 1)
    parts = [shard(i, 2) for i in range(2)]
    assert len(whole) == 5 and parts[0] and parts[1]
    assert not parts[0] & parts[1]
    assert parts[0] | parts[1] == whole


def test_patches_per_image_repeats_each_decoded_image(paired_dir):
    ds = build_dataset(f"paired:{paired_dir}", patch_size=P, batch_size=6, shuffle=False, augment=False,
                       random_crop=False, patches_per_image=3)
    x, _ = batches(ds, 1)[0]
    assert all(np.array_equal(x[0], x[i]) for i in (1, 2)) and not np.array_equal(x[0], x[3])
    assert all(np.array_equal(x[3], x[i]) for i in (4, 5))
    with pytest.raises(DatasetError, match="patches_per_image"):
        build_dataset(f"paired:{paired_dir}", patches_per_image=0)


def test_distributed_dataset_runs_under_a_strategy(paired_dir):
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    dist = build_distributed_dataset(strategy, f"paired:{paired_dir}", batch_size=2, patch_size=P, seed=0)
    x, y = next(iter(dist))
    assert x.shape == (2, P // 2, P // 2, 4) and y.shape == (2, P, P, 3)


def test_bayer_input_kind_and_metadata(rendered_dirs):
    folder, raw, _ = rendered_dirs["GBRG"]
    ds = build_dataset(f"rendered:{folder}", patch_size=P, batch_size=2, input_kind="bayer",
                       with_metadata=True, augment=False)
    x, y = next(iter(ds))
    assert x["raw"].shape == (2, P, P, 1)
    np.testing.assert_allclose(x["wb_gains"][0], raw.wb_gains, rtol=1e-4)
    np.testing.assert_allclose(x["cam_to_srgb"][0], raw.cam_to_srgb, atol=1e-4)
    np.testing.assert_allclose(x["exif"][0], [raw.exif.focal_length, raw.exif.f_number,
                                              raw.exif.exposure_time, raw.exif.iso], rtol=1e-4)


def test_synthetic_spec(tmp_path):
    train = batches(build_dataset("synthetic:3", patch_size=32, batch_size=3, seed=0, cache=False), 1)[0]
    val = batches(build_dataset("synthetic:3", split="val", patch_size=32, batch_size=3), 1)[0]
    assert train[0].shape == (3, 16, 16, 4) and train[1].shape == (3, 32, 32, 3)
    assert 0 <= train[0].min() and train[0].max() <= 1 and 0 <= train[1].min() and train[1].max() <= 1
    assert not np.array_equal(np.sort(train[1].ravel()), np.sort(val[1].ravel()))  # other seeds


def test_synthetic_spec_with_named_photos():
    from isp_tf.data.layouts import find_examples

    keys = [e.key for e in find_examples("synthetic:4:chelsea,coffee", "val")]
    assert keys == ["synthetic/val/chelsea/0", "synthetic/val/coffee/1", "synthetic/val/chelsea/2",
                    "synthetic/val/coffee/3"]
    raw, rgb = find_examples("synthetic:1:rocket")[0].load()
    assert rgb.shape[:2] == raw.bayer.shape == (426, 640)  # rocket.jpg is 427x640, cut to even
    with pytest.raises(DatasetError, match="eagle"):
        find_examples("synthetic:2:chelsea,eagle")


@pytest.mark.parametrize("spec, message", [
    ("nosuch:/tmp", "unknown layout"),
    ("paired", "give a folder"),
    ("paired:/nonexistent/folder", "/nonexistent/folder is missing"),
    ("synthetic:zero", "positive integer"),
])
def test_bad_specs_raise_dataset_error(spec, message):
    with pytest.raises(DatasetError, match=message):
        build_dataset(spec)


def test_bad_arguments_raise_dataset_error(rendered_dirs):
    spec = f"rendered:{rendered_dirs['RGGB'][0]}"
    with pytest.raises(DatasetError, match="patch_size"):
        build_dataset(spec, patch_size=15)
    with pytest.raises(DatasetError, match="input_kind"):
        build_dataset(spec, input_kind="rgb")
    with pytest.raises(DatasetError, match="smaller than patch_size 64"):
        build_dataset(spec, patch_size=64)
    with pytest.raises(DatasetError, match="split"):
        build_dataset(spec, split="training")
    with pytest.raises(DatasetError, match="LAYOUT:PATH"):
        build_dataset(42)
    with pytest.raises(DatasetError, match="no dataset spec"):
        build_dataset([])


def test_pair_with_mismatched_sizes_is_named(tmp_path):
    import imageio.v3 as iio

    raw = small_raw(1)
    write_dng(tmp_path / "a.dng", raw.bayer, raw)
    iio.imwrite(tmp_path / "a.png", np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"a\.dng.*12x10"):
        build_dataset(f"paired:{tmp_path}", patch_size=P)
    (tmp_path / "a.png").unlink()
    with pytest.raises(DatasetError, match="without an sRGB image.*a"):
        build_dataset(f"paired:{tmp_path}", patch_size=P)


def test_rendered_pairs_from_real_camera_files(raw_samples, tmp_path):
    """A Canon EOS D30 CRW (LibRaw's matrix, invalid camera WB): the real file, linked, not copied."""
    (tmp_path / raw_samples["crw"].name).symlink_to(raw_samples["crw"])
    raw = read_raw(raw_samples["crw"])
    ds = build_dataset(f"rendered:{tmp_path}", patch_size=32, batch_size=4, seed=0)
    x, y = batches(ds, 1)[0]
    for packed, rgb in zip(x, y):
        np.testing.assert_allclose(render_of_patch(packed, raw)[1:-1, 1:-1], rgb[1:-1, 1:-1], atol=2e-6)


def test_throughput_benchmark_runs(repo_root, rendered_dirs, tmp_path, capsys):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("data_throughput", repo_root / "benchmarks" / "data_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    folder = rendered_dirs["RGGB"][0]
    assert bench.main(["--spec", f"rendered:{folder}", "--patch-size", "16", "--batch-size", "2", "--batches", "2",
                       "--cached-batches", "2", "--warmup", "0", "--patches-per-image", "1", "2",
                       "--json", str(tmp_path / "r.json")]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [(r["cache"], r["patches_per_image"]) for r in rows] == [(False, 1), (False, 2), (True, 1)]
    assert all(r["pairs_per_second"] > 0 for r in rows)
    assert "| cache | patches per decoded image | pairs/s |" in capsys.readouterr().out
    assert bench.main(["--spec", "nosuch:/x", "--batches", "1"]) == 2
