"""make_samples: deterministic DNGs, and the committed sample_RAW_photos/ folder."""
import hashlib

import pytest

from isp_tf.data.make_samples import SAMPLES, main
from isp_tf.raw import CFA_PATTERNS, read_raw, render_classical


def test_same_seed_same_bytes(tmp_path):
    for run in ("a", "b"):
        assert main(["--out", str(tmp_path / run), "--scale", "0.25", "--quiet"]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted([f"{s[0]}.dng" for s in SAMPLES] + ["README.md"])
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert main(["--out", str(tmp_path / "c"), "--scale", "0.25", "--seed", "1", "--quiet"]) == 0
    assert (tmp_path / "c" / "coffee.dng").read_bytes() != (tmp_path / "a" / "coffee.dng").read_bytes()


def test_bad_arguments_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path), "--scale", "100"])
    assert exc.value.code == 2
    (tmp_path / "file").write_text("x")
    assert main(["--out", str(tmp_path / "file"), "--quiet"]) == 2
    assert "error:" in capsys.readouterr().err


def test_committed_samples(repo_root):
    folder = repo_root / "sample_RAW_photos"
    dngs = sorted(folder.glob("*.dng"))
    assert len(dngs) == len(SAMPLES) and (folder / "README.md").is_file()
    assert sum(p.stat().st_size for p in dngs) < 10 * 2 ** 20
    readme = (folder / "README.md").read_text()
    assert "python -m isp_tf.data.make_samples --out sample_RAW_photos" in readme
    patterns = set()
    for path in dngs:
        # The README's table is that of these very files.
        assert hashlib.sha256(path.read_bytes()).hexdigest()[:16] in readme
        raw = read_raw(path)
        patterns.add(raw.cfa_pattern)
        assert path.name in readme and raw.width * raw.height > 0.9e6
        render = render_classical(raw)
        assert 0.15 < render.mean() < 0.85 and render.std() > 0.1  # a photo, not noise or a flat field
    assert patterns == set(CFA_PATTERNS)
