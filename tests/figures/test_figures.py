"""python -m isp_tf.figures: the table against README.md, the comparison logic, two figures recomputed."""
import json

import pytest

from isp_tf.figures import FIGURES, Figure, check, readme_lines, within
from isp_tf.figures.__main__ import main
from isp_tf.figures.check import DRIFT, FAILED, NOT_IN_README, OK, SKIPPED, format_rows, select
from isp_tf.figures.measure import GROUPS, Group


def test_every_figure_of_the_table_is_in_the_readme(repo_root):
    where = readme_lines((repo_root / "README.md").read_text())
    assert [k for k, line in where.items() if line is None] == []


def test_the_table_is_well_formed():
    keys = [f.key for f in FIGURES]
    assert len(keys) == len(set(keys))
    assert {f.group for f in FIGURES} <= set(GROUPS)
    assert {g.kind for g in GROUPS.values()} == {"cheap", "committed", "expensive", "test"}
    for f in FIGURES:
        assert f.tolerance >= 0 and f.text.strip(), f.key
        if GROUPS[f.group].kind == "test":  # the bound a test asserts is within a small margin of the figure
            assert "::" in f.field and f.tolerance <= 3 * f.value, f.key


def test_readme_lines_ignore_line_breaks_and_find_the_line():
    figs = [Figure("a", "max abs error 1.25e-6", 1.25e-6, 0, "g", "x"),
            Figure("b", "not there", 1, 0, "g", "x")]
    assert readme_lines("intro\n\nFP32 131.9 KB, max\nabs   error 1.25e-6; FP16\n", figs) == {"a": 3, "b": None}


def test_within_applies_scale_and_tolerance():
    kb = Figure("k", "t", 131.9, 0.05, "g", "bytes", "KB", 1e-3)
    assert within(kb, 131_920) and within(kb, 131_850) and not within(kb, 132_000)
    exact = Figure("p", "t", 116_015, 0, "g", "n")
    assert within(exact, 116_015) and not within(exact, 116_016)
    assert not within(exact, None) and not within(exact, float("nan"))


def _fake_groups(calls):
    def measured():
        calls.append("cheap")
        return {"psnr": 23.66, "ssim": 0.70}

    def broken():
        raise OSError("no such file: shared/raw_samples/x.dng")

    return {"cheap": Group("cheap", measured, "fake"), "slow": Group("expensive", broken, "fake"),
            "broken": Group("cheap", broken, "fake"), "tests": Group("test", dict, "fake")}


def test_check_names_drift_missing_text_skips_and_failures(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test():\n    assert psnr > 23.5\n")
    readme = "| model | 23.65 | 0.757 |\nslow 1.0 figure\nbroken 2.0\nbound 23.5 dB"
    figs = [Figure("eval.psnr", "| 23.65 |", 23.65, 0.02, "cheap", "psnr", "dB"),
            Figure("eval.ssim", "| 0.757 |", 0.757, 0.002, "cheap", "ssim"),
            Figure("eval.gone", "| 99.9 |", 99.9, 0.1, "cheap", "psnr"),
            Figure("slow.x", "slow 1.0", 1.0, 0.1, "slow", "x"),
            Figure("broken.x", "broken 2.0", 2.0, 0.1, "broken", "x"),
            Figure("bound.kept", "bound 23.5 dB", 23.65, 0.15, "tests", "tests/test_x.py::assert psnr > 23.5"),
            Figure("bound.loose", "bound 23.5 dB", 23.65, 0.15, "tests", "tests/test_x.py::assert psnr > 30")]
    calls = []
    rows = {r.figure.key: r for r in check(figs, readme_text=readme, groups=_fake_groups(calls), repo=tmp_path,
                                           progress=False)}
    assert calls == ["cheap"]  # one run per group, however many figures it backs
    assert rows["eval.psnr"].status == OK and rows["eval.psnr"].measured == pytest.approx(23.66)
    assert rows["eval.psnr"].line == 1
    assert rows["eval.ssim"].status == DRIFT  # 0.70 is not 0.757 +- 0.002
    assert rows["eval.gone"].status == NOT_IN_README
    assert rows["slow.x"].status == SKIPPED and "--full" in rows["slow.x"].note
    assert rows["broken.x"].status == FAILED and "OSError: no such file" in rows["broken.x"].note
    assert rows["bound.kept"].status == OK and rows["bound.loose"].status == DRIFT
    assert [r.figure.key for r in rows.values() if r.bad] == ["eval.ssim", "eval.gone", "broken.x", "bound.loose"]
    text = format_rows(list(rows.values()))
    assert "| DRIFT | eval.ssim | 0.757 " in text
    assert text.splitlines()[-1].startswith("7 figures: 2 ok") and "drifted: eval.ssim, bound.loose" in text


def test_select_by_key_or_group():
    assert {f.group for f in select(FIGURES, ["bench"])} == {"bench", "bench_runtimes"}
    assert [f.key for f in select(FIGURES, ["params.genisp"])] == ["params.genisp"]
    assert select(FIGURES, ["nothing*"]) == []


def test_cheap_and_committed_figures_recomputed_by_the_command(tmp_path, capsys, raw_samples):
    """The CLI end to end: the classical render against LibRaw (rerun) and the benchmark cells (committed)."""
    out = tmp_path / "figures.json"
    assert main(["--check", "--only", "raw.", "--only", "bench.", "--json", str(out), "--quiet"]) == 0
    rows = json.loads(out.read_text())
    assert {r["status"] for r in rows} == {OK}
    raw = next(r for r in rows if r["key"] == "raw.classical_vs_libraw")
    assert raw["recomputed"] == pytest.approx(75.6, abs=0.05) and raw["kind"] == "cheap"
    assert sum(r["kind"] == "committed" for r in rows) >= 30
    printed = capsys.readouterr().out
    assert "compared with the committed file, not rerun" in printed


def test_a_drifted_readme_fails_the_command(tmp_path, capsys, repo_root):
    readme = (repo_root / "README.md").read_text().replace("| 0.51 s, 1853 MB, **1.01x**", "| 0.49 s, 1853 MB, **1.01x**")
    (tmp_path / "README.md").write_text(readme)
    assert main(["--check", "--only", "bench.fp32_plain_whole.fullhd", "--readme", str(tmp_path / "README.md"),
                 "--quiet"]) == 1
    assert "not in the README: bench.fp32_plain_whole.fullhd.median_s" in capsys.readouterr().out


def test_usage_errors(capsys):
    assert main(["--check", "--only", "no_such_figure"]) == 2
    assert capsys.readouterr().err.startswith("error: --only no_such_figure matches no figure")
    assert main(["--only", "params"]) == 0  # without --check: the table, nothing recomputed
    assert "| params.pynet | 47,548,170" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "committed results files" in capsys.readouterr().out
