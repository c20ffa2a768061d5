"""Fixtures of the isp_tf.data tests: small synthetic RAW files written into temp dirs."""
import pytest
from data_fixtures import small_raw

from isp_tf.raw import CFA_PATTERNS, render_classical, write_dng


@pytest.fixture(scope="session")
def rendered_dirs(tmp_path_factory):
    """{pattern: (folder with one DNG, RawImage, full classical render)} for the four CFA patterns."""
    out = {}
    for i, pattern in enumerate(CFA_PATTERNS):
        folder = tmp_path_factory.mktemp(f"rendered_{pattern}")
        raw = small_raw(10 + i, pattern=pattern)
        write_dng(folder / f"img_{pattern}.dng", raw.bayer, raw)
        out[pattern] = (folder, raw, render_classical(raw))
    return out
