"""Run one command's ``main(argv)`` for many argument vectors in one process (TensorFlow starts once).

    python tests/reliability/drive.py CASES.json RESULTS.json

``CASES.json``: ``[{"label": ..., "module": "isp_tf.infer.__main__", "argv": [...], "timeout": seconds},
...]``; the cases may name different commands (TensorFlow then starts once for all).  Each case runs as the
command's own ``main(argv)`` would from a shell: what it writes to ``sys.stdout``/``sys.stderr`` is
captured, ``SystemExit`` (argparse) becomes the exit code, and anything that escapes ``main`` is
recorded as a crash with its traceback (the commands must never let one escape).  A case that runs
past its timeout is interrupted by SIGALRM and recorded as a hang.  Spawning a process per case
would cost a TensorFlow import (seconds) each; the single-process runs in ``run_corpus.py`` check
the process-level behaviour once per command.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import signal
import sys
import time
import traceback


class _Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise _Hang()


def run_case(main, argv, timeout):
    out, err = io.StringIO(), io.StringIO()
    crash = None
    hang = False
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(max(1, int(timeout)))
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(list(argv))
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except _Hang:
        rc, hang = None, True
    except BaseException:  # noqa: BLE001 - exactly what the commands must never let out
        rc, crash = None, traceback.format_exc()
    finally:
        signal.alarm(0)
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue(), "crash": crash, "hang": hang,
            "seconds": round(time.monotonic() - start, 3)}


def main(argv=None) -> int:
    cases_path, results_path = (argv or sys.argv[1:])[:2]
    cases = json.loads(open(cases_path).read())
    results = []
    for case in cases:
        entry = importlib.import_module(case["module"]).main
        result = run_case(entry, case["argv"], case.get("timeout", 120))
        result["label"] = case["label"]
        results.append(result)
        with open(results_path, "w") as f:  # after each case: a crash of the process keeps the others
            json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
