"""read_raw takes EXIF and the camera name from every format LibRaw opens, and says where each came from.

A non-TIFF RAW container (CR3, RAF, ORF, RW2) cannot be written here, so the non-TIFF
path is exercised on a DNG by making the reader believe its header is not TIFF
(monkeypatching ``reader._is_tiff``), and LibRaw's fallback by hiding exifread's tags.
"""
import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from isp_tf.raw import Exif, RawImage, read_raw, write_dng
from isp_tf.raw import reader
from isp_tf.raw.color import cam_to_xyz_from_cam_to_srgb

XYZ = cam_to_xyz_from_cam_to_srgb(np.eye(3))

SHOT = Exif(iso=800.0, exposure_time=0.01, f_number=2.8, focal_length=4.2)
FIELDS = ("iso", "exposure_time", "f_number", "focal_length")


@pytest.fixture()
def dng(tmp_path):
    rng = np.random.default_rng(0)
    raw = RawImage(bayer=rng.integers(600, 4000, (32, 40)).astype(np.uint16), cfa_pattern="RGGB",
                   black_level=512, white_level=16383, wb_gains=[2.0, 1.0, 1.5],
                   cam_to_xyz=XYZ, cam_to_srgb=np.eye(3), exif=SHOT, camera="Acme Cam1")
    path = tmp_path / "shot.dng"
    write_dng(path, raw.bayer, raw)
    return path


def _check_exif(raw):
    for name in FIELDS:
        assert getattr(raw.exif, name) == pytest.approx(getattr(SHOT, name), rel=1e-5), name


def test_tiff_raw_fields_come_from_exif(dng):
    raw = read_raw(dng)
    _check_exif(raw)
    assert raw.camera == "Acme Cam1"
    assert raw.sources == {**{f: "exif" for f in FIELDS}, "camera": "exif"}


def test_a_file_without_a_tiff_header_still_gets_exif_and_camera(dng, monkeypatch):
    # as for CR3/RAF/ORF/RW2: LibRaw opens it, the header is not TIFF's
    monkeypatch.setattr(reader, "_is_tiff", lambda head: False)
    raw = read_raw(dng)
    _check_exif(raw)
    assert raw.camera == "Acme Cam1"
    assert raw.sources["camera"] == "exif" and all(raw.sources[f] == "exif" for f in FIELDS)


def test_libraw_fields_when_exifread_cannot_parse_the_file(dng, monkeypatch):
    monkeypatch.setattr(reader, "_is_tiff", lambda head: False)
    monkeypatch.setattr(reader, "_exif_tags", lambda path: {})
    raw = read_raw(dng)
    _check_exif(raw)  # rawpy's RawPy.other: iso_speed, shutter_speed, aperture, focal_length
    assert all(raw.sources[f] == "libraw" for f in FIELDS)
    # rawpy 0.28 exposes no make/model: unknown, and said so
    assert raw.camera is None and raw.sources["camera"] is None


def test_unknown_fields_are_recorded_as_unknown(tmp_path):
    bayer = np.full((32, 40), 1000, np.uint16)
    raw = RawImage(bayer=bayer, cfa_pattern="RGGB", black_level=0, white_level=4095, wb_gains=[1, 1, 1],
                   cam_to_xyz=XYZ, cam_to_srgb=np.eye(3))
    write_dng(tmp_path / "plain.dng", bayer, raw)
    back = read_raw(tmp_path / "plain.dng")
    for name in FIELDS:
        assert (getattr(back.exif, name) is None) == (back.sources[name] is None), name
    assert dataclasses.replace(back).sources == back.sources


def test_raw_still_imports_no_tensorflow():
    code = "import sys, isp_tf.raw.reader; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
