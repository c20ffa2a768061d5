"""tf.distribute in fresh processes, against the shared tiny run.

Kill/resume (SIGKILL at three steps, Ctrl-C) is tested in tests/reliability/test_faults.py.
"""
import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _code(argv, prelude="", callbacks="()"):
    return f"import sys\n{prelude}\nfrom isp_tf.train.__main__ import main\nsys.exit(main({argv!r}, callbacks={callbacks}))"


def _python(code, timeout=300, **env):
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(**env), capture_output=True,
                          text=True, timeout=timeout)


def _weights(path):
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, np.asarray(obj)) if hasattr(obj, "shape") else None)
    assert len(out) > 10
    return out


def _assert_close_to(full_run, out):
    ref, got = _weights(full_run / "final.weights.h5"), _weights(out / "final.weights.h5")
    for name in ref:  # same examples, same global batch: equal up to summation order
        np.testing.assert_allclose(got[name], ref[name], atol=5e-5, err_msg=name)


def test_mirrored_over_two_logical_cpus_matches_one_device(tmp_path, tiny_args, full_run):
    prelude = ("import tensorflow as tf\n"
               "cpu = tf.config.list_physical_devices('CPU')[0]\n"
               "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)")
    out = tmp_path / "mirrored"
    result = _python(_code(tiny_args + ["--out", str(out), "--strategy", "mirrored"], prelude=prelude))
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_close_to(full_run, out)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_on_localhost(tmp_path, tiny_args, full_run):
    out = tmp_path / "multiworker"
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    code = _code(tiny_args + ["--out", str(out), "--strategy", "multiworker"])
    procs = [subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})))
        for i in range(2)]
    try:
        outputs = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    assert (out / "final.weights.h5").is_file() and not (out / ".worker-1").exists()
    assert json.loads((out / "run.json").read_text())["recipe"]["batch_size"] == 2
    _assert_close_to(full_run, out)
