"""python -m isp_tf.train end to end on tiny models: learning, kill/resume, tf.distribute, errors.

The three subprocess runs of MicroISP (uninterrupted, killed, resumed) share one
module-scoped fixture; the mirrored and multi-worker runs compare against the
uninterrupted one.
"""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = ["--model", "microisp", "--small", "--data", "synthetic:2", "--patch-size", "160",
        "--batch-size", "2", "--steps-per-epoch", "3", "--epochs", "2", "--validation-steps", "1",
        "--checkpoint-every", "2", "--seed", "3", "--quiet"]
KILL_AT = 3  # the run is SIGKILLed right after step 3; the last checkpoint is step 2


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _python(code, *, timeout=240, **env):
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(**env), capture_output=True,
                          text=True, timeout=timeout)


def _run_cli(args, *, prelude="", **kw):
    code = f"import sys\n{prelude}\nfrom isp_tf.train.__main__ import main\nsys.exit(main({args!r}))"
    return _python(code, **kw)


_KILLER = f"""
import os, signal
from isp_tf.train.trainer import Callback
class Kill(Callback):
    def on_step_end(self, step, logs):
        if step == {KILL_AT}:
            os.kill(os.getpid(), signal.SIGKILL)
"""


def _weights(path):
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, np.asarray(obj)) if hasattr(obj, "shape") else None)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    full = _run_cli(TINY + ["--out", str(root / "full")])
    assert full.returncode == 0, full.stderr[-3000:]
    code = (f"import sys\n{_KILLER}\nfrom isp_tf.train.__main__ import main\n"
            f"sys.exit(main({TINY + ['--out', str(root / 'killed')]!r}, callbacks=[Kill()]))")
    killed = _python(code)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    return root


def test_killed_run_resumes_to_the_same_weights(runs):
    killed = runs / "killed"
    assert not (killed / "final.weights.h5").exists()
    state = (killed / "checkpoints" / "checkpoint").read_text()
    assert "ckpt-2" in state and "ckpt-3" not in state and "ckpt-4" not in state
    resumed = _run_cli(["--out", str(killed), "--resume", "--quiet"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _weights(runs / "full" / "final.weights.h5"), _weights(killed / "final.weights.h5")
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    history = json.loads((killed / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]


def test_mirrored_over_two_logical_cpus_matches_one_device(runs):
    prelude = ("import tensorflow as tf\n"
               "cpu = tf.config.list_physical_devices('CPU')[0]\n"
               "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)")
    out = runs / "mirrored"
    result = _run_cli(TINY + ["--out", str(out), "--strategy", "mirrored"], prelude=prelude)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["recipe"]["batch_size"] == 2
    ref, got = _weights(runs / "full" / "final.weights.h5"), _weights(out / "final.weights.h5")
    for name in ref:  # same examples, same global batch: equal up to summation order
        np.testing.assert_allclose(got[name], ref[name], atol=2e-5, err_msg=name)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_on_localhost(runs):
    out = runs / "multiworker"
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    code = f"import sys\nfrom isp_tf.train.__main__ import main\nsys.exit(main({TINY + ['--out', str(out), '--strategy', 'multiworker']!r}))"
    procs = [subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})))
        for i in range(2)]
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    assert (out / "final.weights.h5").is_file() and not (out / ".worker-1").exists()
    ref, got = _weights(runs / "full" / "final.weights.h5"), _weights(out / "final.weights.h5")
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], atol=2e-5, err_msg=name)
