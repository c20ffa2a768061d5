"""Push every corpus entry (:mod:`corpus`) through isp_tf's public entry points and judge the answers.

    python tests/reliability/run_corpus.py [--keep DIR] [--no-network]   # prints one line per outcome

What runs where (TensorFlow costs seconds per process start, so its commands
run many argument vectors in one process through ``drive.py``, each exactly as
``main(argv)``; the commands that need no TensorFlow also run as real,
separate processes):

* ``read_raw`` in this process, on every RAW entry;
* ``python -m isp_tf.infer --renderer classical`` on every RAW entry at once (exit 1, one
  ``error:`` line per bad file, the PNG of every good file written with the right size and
  orientation, nothing else in the folder), and on one bad file alone (exit 2);
* ``python -m isp_tf.infer`` with MicroISP's shipped weights on a few good and bad files, with
  every bad weights file, and with every out-of-range option (``drive.py``);
* ``python export/export_to_tflite.py`` with every bad weights file and out-of-range value (``drive.py``,
  plus an argparse error as a real process);
* ``python -m isp_tf.train`` with every bad recipe, weights file (``--init-from``) and value (``drive.py``,
  plus an argparse error as a real process);
* ``python export/check_nnapi.py`` on every ``.tflite`` entry (``drive.py``, plus one real process);
* ``python -m benchmarks.run --reference`` with every bad ``.tflite`` and out-of-range value.

Each :class:`Outcome` says whether the answer was a clear error (an ``error:`` line naming the
input and containing the entry's words, the expected exit code), a crash (a traceback, an
unexpected exit code or exception), a hang (past its time limit) or left files behind.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402
from corpus import REPO, Entry  # noqa: E402

PYTHON = sys.executable
#: seconds one command may take before it counts as a hang
LIMIT = {"fast": 60, "tf": 240}
#: export cases that build the model before they fail (run by report.py, and by the tests with ISP_TF_SLOW=1)
SLOW_EXPORT = ("export_input_size_not_multiple", "export_out_under_a_file")
_ERROR_LINE = re.compile(r"(?:^|: )error: (.*)$")


@dataclasses.dataclass
class Outcome:
    """The answer one entry got from one entry point."""

    label: str  # the entry's label
    kind: str
    what: str
    via: str  # entry point: read_raw, infer, infer-network, export, train, check_nnapi, benchmarks
    expect: str  # error | ok | verdict
    clear: bool = False  # answered as expected: the right error line / exit code, or success
    crash: bool = False
    hang: bool = False
    partial: List[str] = dataclasses.field(default_factory=list)
    rc: Optional[int] = None
    message: str = ""
    problems: List[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.clear and not (self.crash or self.hang or self.partial or self.problems)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["passed"] = self.passed
        return d


def shown(path) -> str:
    """A path as the commands print it (file names that are not UTF-8 come out backslash-escaped)."""
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["ISP_TF_DEBUG"] = "0"
    env["PYTHONIOENCODING"] = "utf-8:backslashreplace"
    return env


def run_process(argv, timeout) -> dict:
    """Run a command line; ``{"rc", "stdout", "stderr", "hang", "seconds"}``."""
    start = time.monotonic()
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=str(REPO), env=_env())
        out, err, rc, hang = p.stdout, p.stderr, p.returncode, False
    except subprocess.TimeoutExpired as e:
        out, err, rc, hang = e.stdout or b"", e.stderr or b"", None, True
    return {"rc": rc, "stdout": out.decode("utf-8", "backslashreplace"),
            "stderr": err.decode("utf-8", "backslashreplace"), "hang": hang, "crash": None,
            "seconds": round(time.monotonic() - start, 3)}


def run_driver(module, cases, workdir: pathlib.Path, timeout, tag=None) -> Dict[str, dict]:
    """Run ``cases`` (``[{"label", "argv"}]``, each with its ``"module"`` or ``module``) through the
    commands' ``main`` in one ``drive.py`` process."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = tag or module.replace(".", "_")
    cases = [dict(c, module=c.get("module", module)) for c in cases]
    cases_path, results_path = workdir / f"{tag}.cases.json", workdir / f"{tag}.results.json"
    cases_path.write_text(json.dumps(cases))
    proc = run_process([PYTHON, str(HERE / "drive.py"), str(cases_path), str(results_path)], timeout)
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    for r in results:  # as a terminal shows them: non-UTF-8 file names backslash-escaped
        for key in ("stdout", "stderr"):
            r[key] = shown(r[key])
    by_label = {r["label"]: r for r in results}
    for case in cases:  # the process died or hung before these ran
        if case["label"] not in by_label:
            by_label[case["label"]] = {"rc": proc["rc"], "stdout": "", "stderr": proc["stderr"][-2000:],
                                       "hang": proc["hang"], "crash": None if proc["hang"] else
                                       f"driver process ended (rc {proc['rc']}) before this case",
                                       "seconds": proc["seconds"]}
    return by_label


def error_lines(text: str) -> List[str]:
    return [m.group(1) for line in text.splitlines() for m in [_ERROR_LINE.search(line)] if m]


def files_under(folder: pathlib.Path) -> List[pathlib.Path]:
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def judge(entry: Entry, via: str, result: dict, *, expect_rc=(2,), names=(), out_dir=None,
          allowed_files=(), expect=None) -> Outcome:
    """An :class:`Outcome` from a command's result: error lines, exit code, traceback, files left."""
    expect = expect or entry.expect
    o = Outcome(entry.label, entry.kind, entry.what, via, expect, rc=result["rc"],
                seconds=result.get("seconds", 0.0), hang=bool(result.get("hang")))
    text = result["stdout"] + "\n" + result["stderr"]
    o.crash = bool(result.get("crash")) or "Traceback (most recent call last)" in text or (
        result["rc"] is not None and result["rc"] < 0)
    if result.get("crash"):
        o.problems.append("exception escaped main(): " + result["crash"].strip().splitlines()[-1])
    lines = error_lines(result["stderr"])
    if expect == "error":
        named = [line for line in lines if all(n in line for n in names)] if names else lines
        o.message = (named or lines or [""])[-1]
        if not named:
            o.problems.append(f"no error line naming {', '.join(names) or 'the input'}: {lines[-3:]}")
        missing = [w for w in entry.words if not any(w in line.lower() for line in named)]
        if named and missing:
            o.problems.append(f"error line lacks {missing}: {named[-1]}")
    elif expect == "verdict":
        body = result["stdout"].lower()
        missing = [w for w in entry.words if w not in body]
        if missing:
            o.problems.append(f"verdict lacks {missing}")
        o.message = (result["stdout"].strip().splitlines() or [""])[-1]
    else:
        if lines:
            o.problems.append(f"unexpected error lines: {lines}")
        o.message = "ok"
    if result["rc"] not in expect_rc and not o.hang:
        o.problems.append(f"exit code {result['rc']}, expected {' or '.join(map(str, expect_rc))}")
    if out_dir is not None:
        allowed = {pathlib.Path(p) for p in allowed_files}
        o.partial = [str(p.relative_to(out_dir)) for p in files_under(pathlib.Path(out_dir)) if p not in allowed]
    o.clear = not o.problems
    return o


# --------------------------------------------------------------------------- read_raw (in process)
def raw_level(entries: Sequence[Entry]) -> List[Outcome]:
    from isp_tf import errors
    from isp_tf.raw import read_raw

    out = []
    for e in corpus.by_kind(entries, "raw"):
        o = Outcome(e.label, e.kind, e.what, "read_raw", e.expect)
        start = time.monotonic()
        try:
            raw = read_raw(e.path)
        except errors.IspTfError as exc:
            o.message = str(exc)
            if e.expect == "ok":
                o.problems.append(f"refused a valid file: {exc}")
            else:
                want = getattr(errors, e.error)
                if not isinstance(exc, want):
                    o.problems.append(f"{type(exc).__name__}, expected {e.error}")
                if str(e.path) not in str(exc):
                    o.problems.append("message does not name the file")
                missing = [w for w in e.words if w not in str(exc).lower()]
                if missing:
                    o.problems.append(f"message lacks {missing}")
        except Exception as exc:  # noqa: BLE001 - a crash: what this corpus exists to find
            o.crash = True
            o.message = f"{type(exc).__name__}: {exc}"
            o.problems.append(o.message)
        else:
            if e.expect != "ok":
                o.problems.append(f"read without an error ({raw.height}x{raw.width} {raw.cfa_pattern})")
            o.message = "ok"
        o.seconds = round(time.monotonic() - start, 3)
        o.clear = not o.problems
        out.append(o)
    return out


# --------------------------------------------------------------------------- PNG checks
def check_png(path: pathlib.Path, entry: Entry) -> List[str]:
    """The PNG of a valid entry: its size, and the bright quadrant where the orientation puts it."""
    import imageio.v3 as iio

    if not path.is_file():
        return [f"{path.name} was not written"]
    img = np.asarray(iio.imread(path), np.float64)
    problems = []
    if img.shape[:2] != tuple(entry.shape):
        problems.append(f"{path.name}: {img.shape[0]}x{img.shape[1]}, expected {entry.shape[0]}x{entry.shape[1]}")
        return problems
    h, w = img.shape[:2]
    quads = {"tl": img[: h // 2, : w // 2], "tr": img[: h // 2, w - w // 2:],
             "bl": img[h - h // 2:, : w // 2], "br": img[h - h // 2:, w - w // 2:]}
    brightest = max(quads, key=lambda k: quads[k].mean())
    if entry.corner and brightest != entry.corner:
        problems.append(f"{path.name}: bright corner at {brightest}, expected {entry.corner} (orientation)")
    return problems


# --------------------------------------------------------------------------- infer
def infer_classical(entries, work: pathlib.Path) -> List[Outcome]:
    """Every RAW entry in one classical infer run, then one bad file alone."""
    from isp_tf.infer.pipeline import output_paths

    raws = corpus.by_kind(entries, "raw")
    inputs = [e for e in raws if not (e.path.is_dir() and not e.path.is_symlink())]  # a folder is expanded
    out_dir = work / "infer_classical"
    pngs = dict(zip([e.label for e in inputs], output_paths([e.path for e in inputs], out_dir)))
    result = run_process([PYTHON, "-m", "isp_tf.infer", "--renderer", "classical", "--quiet", "--out",
                          str(out_dir)] + [os.fsdecode(os.fsencode(e.path)) for e in inputs], LIMIT["fast"])
    good = {pngs[e.label] for e in inputs if e.expect == "ok"}
    outcomes = []
    for e in inputs:
        if e.expect == "ok":
            o = judge(e, "infer", result, expect_rc=(1,), expect="ok")
            o.problems = [p for p in o.problems if not p.startswith("unexpected error lines")]
            bad_lines = [line for line in error_lines(result["stderr"]) if shown(e.path) in line]
            if bad_lines:
                o.problems.append(f"refused: {bad_lines[0]}")
            o.problems += check_png(pngs[e.label], e)
        else:
            o = judge(e, "infer", result, expect_rc=(1,), names=(shown(e.path),))
            if pngs[e.label].exists():
                o.partial.append(pngs[e.label].name)
        o.clear = not o.problems
        outcomes.append(o)
    stray = [str(p.relative_to(out_dir)) for p in files_under(out_dir) if p not in good and p not in
             set(pngs.values())]
    if stray and outcomes:
        outcomes[0].partial += stray  # temporary or unexpected files: charged to the run
    alone = next(e for e in raws if e.name.startswith("cut_"))
    solo_dir = work / "infer_alone"
    result = run_process([PYTHON, "-m", "isp_tf.infer", "--renderer", "classical", "--quiet", "--out",
                          str(solo_dir), str(alone.path)], LIMIT["fast"])
    o = judge(alone, "infer (alone)", result, expect_rc=(2,), names=(shown(alone.path),), out_dir=solo_dir)
    if len(error_lines(result["stderr"])) != 1:
        o.problems.append(f"{len(error_lines(result['stderr']))} error lines for one input")
        o.clear = False
    outcomes.append(o)
    return outcomes


def _tf_cases(entries, work: pathlib.Path):
    """The drive.py cases of infer (network), export and train: {module: [(entry, case, check)]}."""
    raws = corpus.by_kind(entries, "raw")
    weights = corpus.by_kind(entries, "weights")
    good = next(e for e in raws if e.network)
    tiny = next(e for e in raws if e.name == "tiny_22x22.dng")
    plan: Dict[str, list] = {"isp_tf.infer.__main__": [], "isp_tf.export.__main__": [],
                             "isp_tf.train.__main__": []}
    # infer with the network: good + too small + a few bad files in one batch
    batch = [good, tiny] + [e for e in raws if e.name in ("empty.dng", "cut_000100_of_6736.dng", "linear_rgb.dng",
                                                           "cfa_6x6_xtrans.dng", "non_utf8_noise")]
    out = work / "infer_network"
    plan["isp_tf.infer.__main__"].append(
        (batch, {"label": "network_batch", "argv": ["--quiet", "--out", str(out)] + [str(e.path) for e in batch]},
         out))
    for w in weights:
        out = work / "infer_weights" / w.name
        plan["isp_tf.infer.__main__"].append(
            (w, {"label": w.label, "argv": ["--quiet", "--model", "microisp", "--weights", str(w.path), "--out",
                                            str(out), str(good.path)]}, out))
        out = work / "export_weights" / w.name
        plan["isp_tf.export.__main__"].append(
            (w, {"label": w.label, "argv": ["--quiet", "--model", "microisp", "--weights", str(w.path),
                                            "--input-size", "324x324", "--out", str(out / "m.tflite")]}, out))
        out = work / "train_weights" / w.name
        plan["isp_tf.train.__main__"].append(
            (w, {"label": w.label, "argv": ["--quiet", "--model", "microisp", "--small", "--data", "synthetic:2",
                                            "--init-from", str(w.path), "--out", str(out), "--epochs", "1",
                                            "--steps-per-epoch", "1", "--batch-size", "1",
                                            "--patch-size", "160"]}, out))
    for r in corpus.by_kind(entries, "recipe"):
        out = work / "train_recipe" / r.name
        plan["isp_tf.train.__main__"].append(
            (r, {"label": r.label, "argv": ["--quiet", "--model", "microisp", "--small", "--data", "synthetic:2",
                                            "--recipe", str(r.path), "--out", str(out)]}, out))
    for c in corpus.by_kind(entries, "cli"):
        if c.command == "infer":
            out = pathlib.Path(c.argv[c.argv.index("--out") + 1])
            plan["isp_tf.infer.__main__"].append((c, {"label": c.label, "argv": ["--quiet", *c.argv]}, out))
        elif c.command == "export":
            argv = list(c.argv)
            if "--out" in argv:
                out = None  # the --out path lies inside a file: nothing can be written there
            else:
                out = work / "export_cli" / c.name
                argv += ["--out", str(out / "m.tflite")]
            plan["isp_tf.export.__main__"].append((c, {"label": c.label, "argv": ["--quiet", "--small", *argv],
                                                       "slow": c.name in SLOW_EXPORT}, out))
        elif c.command == "train":
            out = work / "train_cli" / c.name
            if c.argv[0] == "--resume":
                argv = ["--resume", "--out", str(out)]
            elif c.argv[0] == "--data":
                argv = ["--model", "microisp", "--small", *c.argv, "--out", str(out)]
            else:
                argv = ["--model", "microisp", "--small", "--data", "synthetic:2", "--out", str(out), *c.argv]
            plan["isp_tf.train.__main__"].append((c, {"label": c.label, "argv": ["--quiet", *argv]}, out))
    return plan


def tf_commands(entries, work: pathlib.Path, slow=True) -> List[Outcome]:
    """infer (network), export and train through one drive.py process: TensorFlow starts once.

    ``slow=False`` leaves out the cases that build a Keras model before they can fail (export's
    model-size and output-path checks, :data:`SLOW_EXPORT`): tens of seconds on a loaded CI machine.
    """
    from isp_tf.infer.pipeline import output_paths

    outcomes = []
    via = {"isp_tf.infer.__main__": "infer", "isp_tf.export.__main__": "export", "isp_tf.train.__main__": "train"}
    plan = _tf_cases(entries, work)
    items = [(s, dict(case, module=module), out) for module, group in plan.items() for s, case, out in group
             if slow or not case.pop("slow", False)]
    results = run_driver(None, [case for _, case, _ in items], work / "drive", LIMIT["tf"], tag="tf_commands")
    for subject, case, out in items:
        module = case["module"]
        result = results[case["label"]]
        if isinstance(subject, list):  # the network batch
            pngs = dict(zip([e.label for e in subject], output_paths([e.path for e in subject], out)))
            for e in subject:
                if e.expect == "ok" and e.network:
                    o = judge(e, "infer-network", result, expect_rc=(1,), expect="ok")
                    o.problems = [p for p in o.problems if not p.startswith("unexpected error lines")]
                    o.problems += check_png(pngs[e.label], e)
                else:  # bad files, and a frame smaller than one MicroISP tile
                    words = ("smaller than one tile",) if e.expect == "ok" else e.words
                    o = judge(dataclasses.replace(e, words=words), "infer-network", result, expect_rc=(1,),
                              names=(shown(e.path),), expect="error")
                    if pngs[e.label].exists():
                        o.partial.append(pngs[e.label].name)
                o.clear = not o.problems
                outcomes.append(o)
            continue
        if subject.expect == "ok":  # e.g. an --out folder that does not exist yet: created
            png = out / "good.png"
            o = judge(subject, via[module], result, expect_rc=(0,), out_dir=out, allowed_files=[png])
            o.problems += [] if png.is_file() else [f"{png} was not written"]
            o.clear = not o.problems
            outcomes.append(o)
            continue
        name_in_message = (subject.path.name,) if subject.kind in ("weights", "recipe") else ()
        outcomes.append(judge(subject, via[module], result, expect_rc=(2,), names=name_in_message, out_dir=out))
    # the same commands as real processes, for argparse-level errors (no TensorFlow start)
    for script, argv, name in (
            ([str(REPO / "export" / "export_to_tflite.py")], ["--model", "microisp", "--precision", "fp8",
                                                               "--out", str(work / "x.tflite")], "precision"),
            (["-m", "isp_tf.train"], ["--resume", "--model", "microisp", "--out", str(work / "t")], "--model")):
        e = Entry(f"{script[-1].split('/')[-1]}_argparse", "cli", f"argparse error as a real process ({name})",
                  command=script[-1], argv=tuple(argv), words=(name,))
        res = run_process([PYTHON, *script, *argv], LIMIT["fast"])
        outcomes.append(judge(e, script[-1].split("/")[-1].replace(".py", ""), res, expect_rc=(2,)))
    return outcomes


# --------------------------------------------------------------------------- check_nnapi, benchmarks
def tflite_commands(entries, work: pathlib.Path) -> List[Outcome]:
    outcomes = []
    tfl = corpus.by_kind(entries, "tflite")
    cases, outs = [], {}
    for t in tfl:
        out = work / "check_nnapi" / t.name
        outs[t.label] = out
        cases.append({"label": t.label, "argv": [str(t.path), "--json", str(out / "report.json")]})
    results = run_driver("isp_tf.export.check_nnapi", cases, work / "drive", LIMIT["fast"])
    for t in tfl:
        out = outs[t.label]
        if t.expect == "error":
            o = judge(t, "check_nnapi", results[t.label], expect_rc=(2,), names=(t.path.name,), out_dir=out)
        else:  # a valid graph: exit 0 (delegated) or 1 (verdict), report written
            rc = (1,) if t.expect == "verdict" else (0,)
            o = judge(t, "check_nnapi", results[t.label], expect_rc=rc, out_dir=out,
                      allowed_files=[out / "report.json"])
            if not (out / "report.json").is_file():
                o.problems.append("no JSON report")
                o.clear = False
        outcomes.append(o)
    # one real process of the documented entry point
    bad = next(t for t in tfl if t.name == "random.tflite")
    res = run_process([PYTHON, str(REPO / "export" / "check_nnapi.py"), str(bad.path)], LIMIT["fast"])
    outcomes.append(judge(bad, "check_nnapi.py (process)", res, expect_rc=(2,), names=(bad.path.name,)))

    # benchmarks.run: bad references and values are refused before any measurement starts
    bench_out = work / "bench"
    bench_out.mkdir(parents=True, exist_ok=True)
    base = ["--models", "microisp:small", "--precisions", "fp32", "--resolutions", "64x64", "--runs", "1",
            "--baselines", "none", "--json", str(bench_out / "out.json")]
    cases, subjects = [], []
    for t in tfl:
        if t.name in ("good.tflite", "dynamic_shape.tflite"):
            continue
        expect_words = t.words if t.expect == "error" else (("custom op",) if t.expect == "verdict" else ("(1, h, w, 4)",))
        subjects.append(dataclasses.replace(t, words=expect_words))
        cases.append({"label": t.label, "argv": base + ["--reference", str(t.path)]})
    for c in corpus.by_kind(entries, "cli"):
        if c.command == "bench":
            argv = list(base)
            flag = c.argv[0]
            if flag in argv:
                i = argv.index(flag)
                argv[i + 1] = c.argv[1]
            else:
                argv += list(c.argv)
            subjects.append(c)
            cases.append({"label": c.label, "argv": argv})
    results = run_driver("benchmarks.run", cases, work / "drive", LIMIT["fast"])
    for s, case in zip(subjects, cases):
        names = (s.path.name,) if s.kind == "tflite" else ()
        outcomes.append(judge(s, "benchmarks", results[case["label"]], expect_rc=(2,), names=names,
                              out_dir=bench_out, expect="error"))
    res = run_process([PYTHON, "-m", "benchmarks.run", *cases[0]["argv"]], LIMIT["fast"])
    outcomes.append(judge(subjects[0], "benchmarks (process)", res, expect_rc=(2,), names=(subjects[0].path.name,),
                          out_dir=bench_out, expect="error"))
    return outcomes


def run_all(root=None, slow=True) -> List[Outcome]:
    """Build the corpus under ``root`` (a temporary folder by default) and run every group."""
    import contextlib

    with contextlib.ExitStack() as stack:
        if root is None:
            root = stack.enter_context(tempfile.TemporaryDirectory(prefix="isp_tf_corpus_"))
        root = pathlib.Path(root)
        entries = corpus.build(root / "corpus")
        work = root / "work"
        return (raw_level(entries) + infer_classical(entries, work) + tflite_commands(entries, work)
                + tf_commands(entries, work, slow=slow))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", metavar="DIR", help="build and run in DIR (kept) instead of a temporary folder")
    p.add_argument("--fast", action="store_true", help="leave out the cases that build a model first (what CI runs)")
    p.add_argument("--json", metavar="PATH", help="write the outcomes as JSON")
    args = p.parse_args(argv)
    outcomes = run_all(args.keep, slow=not args.fast)
    for o in outcomes:
        flag = "ok  " if o.passed else "FAIL"
        print(f"{flag} {o.via:22s} {o.label:44s} rc={o.rc} {o.seconds:6.2f}s {o.message[:110]}"
              + ("" if o.passed else f"  <- {o.problems} partial={o.partial} crash={o.crash} hang={o.hang}"))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps([o.to_dict() for o in outcomes], indent=1))
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
