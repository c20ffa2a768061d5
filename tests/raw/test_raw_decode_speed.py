"""benchmarks/decode_speed.py: table, JSON and exit codes (on a small DNG, to stay fast)."""
import json

import numpy as np

from benchmarks import decode_speed
from isp_tf.raw import read_raw, write_dng


def test_table_and_json(tmp_path, raw_samples, capsys):
    raw = read_raw(raw_samples["crw"])
    write_dng(tmp_path / "small.dng", raw.bayer[:200, :300], raw)
    (tmp_path / "notes.md").write_text("skipped")  # not a RAW file: folders skip it
    out = tmp_path / "res" / "speed.json"
    assert decode_speed.main([str(tmp_path), "--repeat", "1", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| small.dng | 200x300 | 0.06 |" in table
    assert "rawpy postprocess ms/MP" in table
    rows = json.loads(out.read_text())["rows"]
    assert [r["file"] for r in rows] == ["small.dng"]
    r = rows[0]
    assert r["ours_total_s"] == r["read_raw_s"] + r["render_s"]
    assert np.isclose(r["ours_total_ms_per_mp"], 1e3 * r["ours_total_s"] / 0.06)
    assert all(r[k] > 0 for k in ("read_raw_s", "render_s", "rawpy_postprocess_s"))


def test_bad_input_exits_2(tmp_path, capsys):
    assert decode_speed.main([str(tmp_path / "missing.dng")]) == 2
    assert "error: no RAW files found" in capsys.readouterr().err
    (tmp_path / "fake.dng").write_text("not a raw file")
    assert decode_speed.main([str(tmp_path / "fake.dng"), "--repeat", "1"]) == 2
    assert "fake.dng" in capsys.readouterr().err
