"""Timing, peak memory and GEMM peak of the current process (numpy + psutil only).

Peak resident memory only ever grows within a process (``ru_maxrss`` is a
high-water mark, and allocators rarely give pages back), so the harness runs
every configuration in a fresh child process and measures it twice:

* ``ru_maxrss`` from ``getrusage`` -- exact, but it includes whatever the
  process touched before the measurement started (imports, the input frame);
* a psutil thread sampling the RSS every few milliseconds -- it starts at
  the baseline, but can miss a short spike between two samples.

:class:`PeakRss` reports both above the baseline taken when it starts.
"""
from __future__ import annotations

import resource
import sys
import threading
import time
from typing import Callable, Dict, List

import numpy as np

MB = 1024.0 * 1024.0


def rss_bytes() -> int:
    """Current resident set size of this process."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def maxrss_bytes() -> int:
    """``ru_maxrss`` in bytes (Linux reports KiB, macOS bytes)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(value if sys.platform == "darwin" else value * 1024)


class PeakRss:
    """Peak RSS above a baseline, by psutil sampling and by ``ru_maxrss``.

    Use as a context manager; the baseline is the RSS on entry::

        with PeakRss() as peak:
            run()
        peak.result()  # {"baseline_rss_mb", "peak_rss_mb", "peak_rss_sampled_mb", "peak_rss_ru_mb"}
    """

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = float(interval_s)
        self._stop = threading.Event()
        self._thread = None
        self.baseline = 0
        self.sampled_peak = 0
        self.maxrss_before = 0
        self.maxrss_after = 0

    def _sample(self):
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            rss = proc.memory_info().rss
            if rss > self.sampled_peak:
                self.sampled_peak = rss
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self.baseline = rss_bytes()
        self.sampled_peak = self.baseline
        self.maxrss_before = maxrss_bytes()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sampled_peak = max(self.sampled_peak, rss_bytes())
        self.maxrss_after = maxrss_bytes()
        return False

    def result(self) -> Dict[str, float]:
        """Figures in MB.  ``peak_rss_mb`` is the larger of the two estimates,
        except that ``ru_maxrss`` only counts when it grew during the measurement
        (otherwise it still holds an earlier spike of the process)."""
        sampled = (self.sampled_peak - self.baseline) / MB
        ru = (self.maxrss_after - self.baseline) / MB
        grew = self.maxrss_after > self.maxrss_before
        return {
            "baseline_rss_mb": round(self.baseline / MB, 2),
            "peak_rss_sampled_mb": round(sampled, 2),
            "peak_rss_ru_mb": round(ru, 2) if grew else None,
            "peak_rss_mb": round(max(sampled, ru) if grew else sampled, 2),
        }


def time_runs(fn: Callable[[], object], runs: int, warmup: int = 1) -> Dict[str, object]:
    """Time ``fn``: the first call, ``warmup`` more untimed calls, then ``runs`` timed calls.

    Returns ``first_s``, ``median_s``, ``p90_s``, ``min_s``, ``mean_s`` and the list ``runs_s``.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup)):
        fn()
    times: List[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    arr = np.asarray(times)
    return {
        "first_s": first,
        "median_s": float(np.median(arr)),
        "p90_s": float(np.percentile(arr, 90)),
        "min_s": float(arr.min()),
        "mean_s": float(arr.mean()),
        "runs_s": [round(t, 6) for t in times],
    }


def gemm_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    """Best fp32 GFLOP/s of ``n x n`` numpy matmuls over about ``seconds``.

    The number of BLAS threads is whatever the process was started with
    (``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``):
    the harness measures it in a child started with those set.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)  # warm-up (thread pool start, page faults)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    reps = 0
    while reps < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return 2.0 * n ** 3 / best / 1e9


def blas_thread_env(threads: int) -> Dict[str, str]:
    """Environment variables that pin numpy's BLAS (OpenBLAS / MKL / OpenMP) to ``threads``."""
    value = str(int(threads))
    return {name: value for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                     "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
