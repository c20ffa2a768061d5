"""Fault injection against the real commands, each in its own process.

:func:`run_faults` runs every scenario and returns one row per fault
(``name``, ``survived``, ``detail``); ``tests/reliability/test_faults.py``
asserts that each survived and the reliability report (docs/RELIABILITY.md)
tabulates them.  Scenarios:

``train-sigkill-resume``
    ``python -m isp_tf.train`` (PyNET small, level 5, 64-px patches, 12 steps,
    a checkpoint every 2 steps, a piecewise learning rate and flips, so the
    step, the optimizer's moments, the schedule and the data order must all
    be restored) is SIGKILLed right after three steps drawn by a seeded RNG,
    each time continued with ``--resume``; the final weights must equal those
    of an uninterrupted run with the same seed **bit for bit** (CPU, one
    process each: the same ops on the same data give the same floats).
``train-sigint-resume``
    in the same chain, a Ctrl-C (SIGINT) at a fourth drawn step must write a
    checkpoint of exactly that step, exit 130 with no traceback, and the
    ``--resume`` after it must still end on the uninterrupted weights.
``infer-sigkill-mid-write`` / ``export-sigkill-mid-write``
    ``python -m isp_tf.infer`` and ``python export/export_to_tflite.py`` are
    killed (SIGKILL) from inside their output write, after half of a chunk's
    bytes reached the disk: nothing may exist under the output name (no PNG,
    no .tflite, no JSON), and an earlier complete PNG under that name must be
    left byte for byte.
``infer-full-disk``
    ``python -m isp_tf.infer`` writing into a folder with no room (a 1-page
    tmpfs in a user+mount namespace, ``unshare -r -m``; where that is not
    allowed, ``RLIMIT_FSIZE`` with SIGXFSZ ignored, i.e. EFBIG instead of
    ENOSPC) must end with exactly one ``error:`` line naming the file and
    the full disk, no traceback, no temporary file left, and the earlier
    output in that folder byte for byte intact.

The kills are delivered by the process to itself at the exact point (a
training callback, a wrapped ``atomic_write``), so the scenarios are
repeatable; SIGKILL cannot be caught, so where it comes from does not matter.

Run ``python tests/reliability/faults.py`` for the table.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

REPO = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_RAW_photos"
TIMEOUT = 300  # seconds per process; a hang is a failure, not a stuck test

#: the training run every chain is compared with (small enough to trace in seconds)
RECIPE = {
    "model": "pynet",
    "optimizer": {"name": "adam", "learning_rate": 1e-3},
    "lr_schedule": {"name": "piecewise", "boundaries": [5], "factors": [1.0, 0.5]},
    "patch_size": 64, "steps_per_epoch": 6, "augment": True,
    "validation_steps": 1, "checkpoint_every": 2, "log_every": 1,
    "stages": {"5": {"epochs": 2, "batch_size": 2, "loss": {"mse": 1.0}}},
}
TOTAL_STEPS = 12
STAGE_FOLDER = "level_5"


def _env() -> Dict[str, str]:
    # one TensorFlow thread each: the scenarios run side by side on a small machine
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               TF_USE_LEGACY_KERAS="1", PYTHONUNBUFFERED="1", TF_NUM_INTRAOP_THREADS="1",
               TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1")
    for key in ("TF_CONFIG", "ISP_TF_DEBUG"):
        env.pop(key, None)
    return env


def _as_from_a_terminal(preexec=None):
    """A child that gets Ctrl-C as a user at a terminal would: a test session started in the background
    (``cmd &``, nohup) hands its children SIGINT ignored, and the trainer rightly leaves an ignored SIGINT
    alone, so the SIGINT scenario would test nothing."""
    def run():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if preexec:
            preexec()
    return run


def _python(code: str, *, prefix=(), preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=TIMEOUT, preexec_fn=_as_from_a_terminal(preexec))


def _sha(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tail(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else "..." + text[-n:]


def _error_lines(stderr: str) -> List[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --- training: kill / Ctrl-C / resume --------------------------------------------------------------
_TRAIN = """
import os, signal, sys
from isp_tf.train.__main__ import main
from isp_tf.train.trainer import Callback
class Fault(Callback):
    def on_step_end(self, step, logs):
        if step == {at!r}:
            os.kill(os.getpid(), signal.{sig})
sys.exit(main({argv!r}, callbacks=[Fault()] if {at!r} else []))
"""


def _train(argv, at: Optional[int] = None, sig: str = "SIGKILL") -> subprocess.CompletedProcess:
    return _python(_TRAIN.format(argv=list(argv), at=at, sig=sig))


def _weights(path: pathlib.Path) -> Dict[str, "object"]:
    import h5py
    import numpy as np

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, np.asarray(obj)) if hasattr(obj, "shape") else None)
    return out


def _latest_checkpoint(run: pathlib.Path) -> str:
    state = run / "checkpoints" / "checkpoint"
    if not state.is_file():
        return ""
    first = state.read_text().splitlines()[0]  # model_checkpoint_path: "ckpt-N"
    return first.split('"')[1] if '"' in first else first


def draw_fault_steps(seed: int) -> List[int]:
    """Three SIGKILL steps, then one SIGINT step, drawn from ``seed``.

    All fall between checkpoints: each kill loses the steps since the last
    checkpoint (the resume must redo them), and the checkpoint of the SIGINT
    step can only come from the SIGINT handling.  The SIGINT comes after the
    third kill's resume point and before the last step."""
    rng = random.Random(seed)
    every = RECIPE["checkpoint_every"]
    between = [s for s in range(1, TOTAL_STEPS) if s % every]
    kills = sorted(rng.sample(between, 3))
    return kills + [rng.choice([s for s in between if s >= kills[-1]])]


def _train_chain(root: pathlib.Path, seed: int) -> List[dict]:
    """Reference run (in a second process, at the same time) and the killed/interrupted/resumed chain."""
    root.mkdir(parents=True, exist_ok=True)
    recipe = root / "recipe.json"
    recipe.write_text(json.dumps(RECIPE))
    base = ["--model", "pynet", "--stage", "5", "--small", "--data", "synthetic:2", "--recipe", str(recipe),
            "--seed", "7", "--quiet"]
    *kills, sigint_at = draw_fault_steps(seed)
    chain = root / "chain"
    run = chain / STAGE_FOLDER
    resume = ["--out", str(run), "--resume", "--quiet"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reference = pool.submit(_train, base + ["--out", str(root / "reference")])
        problems, notes = [], []
        sigint_ok, sigint_detail = False, "not reached"
        for i, at in enumerate(kills + [sigint_at]):
            sig = "SIGINT" if i == len(kills) else "SIGKILL"
            before = _latest_checkpoint(run)
            proc = _train((base + ["--out", str(chain)]) if i == 0 else resume, at=at, sig=sig)
            after = _latest_checkpoint(run)
            if sig == "SIGKILL":
                if proc.returncode != -signal.SIGKILL:
                    problems.append(f"run {i} was to be killed at step {at}, exit {proc.returncode}: "
                                    f"{_tail(proc.stderr)}")
                    break
                if (run / "final.weights.h5").exists():
                    problems.append(f"final weights written by the run killed at step {at}")
                notes.append(f"SIGKILL after step {at}, resumed from {after or 'step 0'}")
            else:
                clean = "Traceback" not in proc.stderr and "interrupted; continue with --resume" in proc.stderr
                sigint_ok = proc.returncode == 130 and after == f"ckpt-{at}" and clean
                sigint_detail = (f"SIGINT at step {at}: exit {proc.returncode}, latest checkpoint {after!r} "
                                 f"(was {before!r}), {'no traceback' if clean else _tail(proc.stderr)}")
        final = _train(resume)
        ref = reference.result()
    rows = []
    if ref.returncode != 0:
        problems.append(f"the uninterrupted run failed: {_tail(ref.stderr)}")
    if final.returncode != 0:
        problems.append(f"the last --resume failed (exit {final.returncode}): {_tail(final.stderr)}")
    if not problems:
        a, b = _weights(root / "reference" / STAGE_FOLDER / "final.weights.h5"), _weights(run / "final.weights.h5")
        differ = sorted(k for k in a if k not in b or a[k].shape != b[k].shape or (a[k] != b[k]).any())
        if a.keys() != b.keys() or differ or len(a) < 10:
            problems.append(f"final weights differ from the uninterrupted run's: {differ[:5]}")
        else:
            notes.append(f"final weights bit-identical to the uninterrupted run ({len(a)} arrays)")
        history = json.loads((run / "history.json").read_text())
        if [h["epoch"] for h in history] != [0, 1, 2]:
            problems.append(f"history epochs {[h['epoch'] for h in history]}, expected [0, 1, 2]")
    rows.append({"name": "train-sigkill-resume", "survived": not problems,
                 "detail": "; ".join(problems or notes)})
    rows.append({"name": "train-sigint-resume", "survived": sigint_ok and not problems,
                 "detail": sigint_detail + ("" if not problems else "; the resumed chain failed")})
    return rows


# --- a kill in the middle of an output write ---------------------------------------------------------
_KILL_MID_WRITE = """
import contextlib, os, runpy, signal, sys
import isp_tf.utils as utils
_atomic_write = utils.atomic_write

class _HalfThenKill:
    # forwards writes; the first large one (or the third) is cut in half, then SIGKILL
    def __init__(self, f):
        self.f, self.calls = f, 0
    def write(self, data):
        self.calls += 1
        if len(data) >= 4096 or self.calls >= 3:
            self.f.write(data[: len(data) // 2]); self.f.flush(); os.fsync(self.f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return self.f.write(data)
    def __getattr__(self, name):
        return getattr(self.f, name)

@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    with _atomic_write(path, mode) as f:
        yield _HalfThenKill(f) if str(path).endswith({suffix!r}) else f

utils.atomic_write = atomic_write  # before the command imports it
sys.argv = {argv!r}
{run}
"""


def _kill_mid_write(argv, suffix: str, run: str) -> subprocess.CompletedProcess:
    return _python(_KILL_MID_WRITE.format(argv=list(argv), suffix=suffix, run=run))


def _leftovers(folder: pathlib.Path, names) -> str:
    present = [n for n in names if (folder / n).exists()]
    temps = sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name) if folder.is_dir() else []
    return f"under the output names: {present or 'nothing'}; temporary files: {temps or 'none'}"


def _infer_kill(root: pathlib.Path, sample: pathlib.Path, reference_png: pathlib.Path) -> dict:
    out = root / "infer_killed"
    out.mkdir()
    png = out / f"{sample.stem}.png"
    infer = ["python -m isp_tf.infer", str(sample), "--out", str(out), "--renderer", "classical", "--quiet"]
    run = "runpy.run_module('isp_tf.infer', run_name='__main__')"
    fresh = _kill_mid_write(infer, ".png", run)  # nothing there before
    fresh_ok = fresh.returncode == -signal.SIGKILL and not png.exists()
    fresh_named = "no PNG" if not png.exists() else "a PNG"
    fresh_temps = sorted(p.name for p in out.iterdir())
    for p in out.iterdir():
        p.unlink()
    shutil.copyfile(reference_png, png)  # an earlier complete output under the same name
    digest = _sha(png)
    again = _kill_mid_write(infer + ["--bits", "16"], ".png", run)
    kept = again.returncode == -signal.SIGKILL and png.is_file() and _sha(png) == digest
    detail = (f"killed mid-write with no earlier output: exit {fresh.returncode}, "
              f"{fresh_named} under the name (left: {fresh_temps}); "
              f"killed while overwriting: exit {again.returncode}, earlier PNG "
              f"{'byte-identical' if kept else 'CHANGED or missing'}")
    if fresh.returncode != -signal.SIGKILL or again.returncode != -signal.SIGKILL:
        detail += f"; stderr: {_tail(fresh.stderr + again.stderr)}"
    return {"name": "infer-sigkill-mid-write", "survived": fresh_ok and kept, "detail": detail}


def _export_kill(root: pathlib.Path) -> dict:
    out = root / "export_killed"
    tflite = out / "pynet_small.tflite"
    argv = ["export/export_to_tflite.py", "--model", "pynet", "--small", "--precision", "fp32",
            "--input-size", "64x64", "--no-parity", "--quiet", "--out", str(tflite)]
    proc = _kill_mid_write(argv, ".tflite", "runpy.run_path('export/export_to_tflite.py', run_name='__main__')")
    names = [tflite.name, tflite.with_suffix(".json").name]
    survived = (proc.returncode == -signal.SIGKILL and out.is_dir()
                and not any((out / n).exists() for n in names)
                and any(".tmp-" in p.name for p in out.iterdir()))  # it was killed mid-write, not before
    detail = f"exit {proc.returncode}; {_leftovers(out, names)}"
    if proc.returncode != -signal.SIGKILL:
        detail += f"; stderr: {_tail(proc.stderr)}"
    return {"name": "export-sigkill-mid-write", "survived": survived, "detail": detail}


# --- a full disk ---------------------------------------------------------------------------------------
def _tmpfs_allowed() -> bool:
    unshare = shutil.which("unshare")
    if not unshare:
        return False
    probe = tempfile.mkdtemp(prefix="isp_tf_tmpfs_probe_")
    try:
        result = subprocess.run([unshare, "-r", "-m", "sh", "-c", f"mount -t tmpfs -o size=4k tmpfs {probe}"],
                                capture_output=True, timeout=30)
        return result.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        os.rmdir(probe)


def _infer_full_disk(root: pathlib.Path, sample: pathlib.Path, reference_png: pathlib.Path,
                     tmpfs: Optional[bool] = None) -> dict:
    """Infer ``sample`` into a folder that already holds ``reference_png`` and has no room for more
    (``tmpfs``: use a tmpfs; default where ``unshare`` may mount one, else ``RLIMIT_FSIZE``)."""
    kept = root / "full_disk_after"  # the folder's content after the run (the tmpfs vanishes with it)
    mount = root / "full_disk"
    mount.mkdir()
    earlier = f"earlier_{reference_png.name}"
    cmd = [sys.executable, "-m", "isp_tf.infer", str(sample), "--out", str(mount), "--renderer", "classical",
           "--quiet"]
    if _tmpfs_allowed() if tmpfs is None else tmpfs:
        how = "tmpfs of one page past the earlier output (unshare -r -m), ENOSPC"
        size = reference_png.stat().st_size + 4096
        script = (f"mount -t tmpfs -o size={size} tmpfs {mount} && cp {reference_png} {mount}/{earlier} && "
                  f"{' '.join(cmd)}; rc=$?; cp -a {mount} {kept}; exit $rc")
        proc = subprocess.run(["unshare", "-r", "-m", "sh", "-c", script], cwd=REPO, env=_env(),
                              capture_output=True, text=True, timeout=TIMEOUT)
    else:
        how = "RLIMIT_FSIZE 4 KiB with SIGXFSZ ignored, EFBIG"
        shutil.copyfile(reference_png, mount / earlier)

        def limit():
            import resource

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

        proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=TIMEOUT,
                              preexec_fn=limit)
        shutil.copytree(mount, kept)
    errors = _error_lines(proc.stderr)
    left = sorted(p.name for p in kept.iterdir()) if kept.is_dir() else []
    intact = (kept / earlier).is_file() and _sha(kept / earlier) == _sha(reference_png)
    survived = (proc.returncode == 2 and len(errors) == 1 and "no space left" in errors[0]
                and str(mount / f"{sample.stem}.png") in errors[0] and "Traceback" not in proc.stderr
                and left == [earlier] and intact)
    return {"name": "infer-full-disk", "survived": survived,
            "detail": (f"{how}: exit {proc.returncode}, {len(errors)} error line(s) "
                       f"{errors[:1] or _tail(proc.stderr)}, folder holds {left}, earlier output "
                       f"{'byte-identical' if intact else 'CHANGED or missing'}")}


def _reference_png(root: pathlib.Path, sample: pathlib.Path) -> pathlib.Path:
    """A complete PNG of ``sample`` rendered by the classical renderer (the 'earlier output')."""
    out = root / "infer_reference"
    proc = subprocess.run([sys.executable, "-m", "isp_tf.infer", str(sample), "--out", str(out),
                           "--renderer", "classical", "--quiet"], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=TIMEOUT)
    png = out / f"{sample.stem}.png"
    if proc.returncode != 0 or not png.is_file():
        raise RuntimeError(f"the uninterrupted infer failed (exit {proc.returncode}): {_tail(proc.stderr)}")
    return png


def _guard(name, fn, *args) -> List[dict]:
    start = time.time()
    try:
        rows = fn(*args)
    except Exception as exc:  # noqa: BLE001 - a scenario that cannot run is a fault not survived
        names = [name] if isinstance(name, str) else name
        rows = [{"name": n, "survived": False, "detail": f"{type(exc).__name__}: {_tail(str(exc))}"}
                for n in names]
    rows = rows if isinstance(rows, list) else [rows]
    for row in rows:
        row["detail"] += f" ({time.time() - start:.0f} s)"
    return rows


def run_faults(seed: int = 14, workdir=None) -> List[dict]:
    """Run every scenario (see the module docstring); one ``dict(name, survived, detail)`` per fault.

    ``seed`` draws the training fault steps; ``workdir`` keeps the files (default: a temporary
    folder, removed).  The training chain runs beside the infer/export scenarios (two workers).
    """
    root = pathlib.Path(workdir) if workdir else pathlib.Path(tempfile.mkdtemp(prefix="isp_tf_faults_"))
    root.mkdir(parents=True, exist_ok=True)
    sample = sorted(SAMPLES.glob("*.dng"))[0]
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            train = pool.submit(_guard, ["train-sigkill-resume", "train-sigint-resume"], _train_chain,
                                root / "train", seed)
            export = pool.submit(_guard, "export-sigkill-mid-write", _export_kill, root)
            try:
                png = _reference_png(root, sample)
            except RuntimeError as exc:
                io_rows = [{"name": n, "survived": False, "detail": str(exc)}
                           for n in ("infer-sigkill-mid-write", "infer-full-disk")]
            else:
                io_rows = (_guard("infer-sigkill-mid-write", _infer_kill, root, sample, png)
                           + _guard("infer-full-disk", _infer_full_disk, root, sample, png))
            return train.result() + io_rows + export.result()
    finally:
        if not workdir:
            shutil.rmtree(root, ignore_errors=True)


def main(argv=None) -> int:
    rows = run_faults()
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {'survived' if r['survived'] else 'FAILED  '}  {r['detail']}")
    return 0 if all(r["survived"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
