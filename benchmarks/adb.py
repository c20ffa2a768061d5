"""Benchmarks on an Android phone over adb, with TFLite's ``benchmark_model``.

Two halves:

* :func:`parse_benchmark_output` turns the text ``benchmark_model`` prints
  (directly, through ``adb shell``, or read back from ``adb logcat`` for the
  APK variant) into numbers.  Every format listed in ``shared/ADB_SAMPLES.md``
  is understood: lines with an ``INFO:`` / ``VERBOSE:`` prefix, a logcat
  prefix (``07-08 15:34:26.201 I/tflite  ( 5395): ``) or none; values in
  scientific notation (``2.71985e+06``); the current
  ``Memory footprint delta from the start of the tool (MB): init=.. overall=..``
  and the older ``Peak memory footprint (MB): init=.. overall=..``;
  ``Overall peak memory footprint (MB) via periodic monitoring: ..``; and the
  delegation report (nodes replaced, fully / partially delegated).
* :class:`AdbBenchmark` pushes a user-supplied ``benchmark_model`` binary and
  the exported models to ``/data/local/tmp`` and runs one configuration per
  call.  ``adb`` is whatever ``adb`` is first on ``PATH`` (the tests put a
  fake one there).  No device, an unauthorized or offline device, several
  devices without ``--serial``, a missing ``adb`` and a missing binary all
  raise :class:`AdbError` with a message that says what to do.

TFLite's ``benchmark_model`` is not shipped with isp_tf (it cannot be built
here): build it from TensorFlow (``bazel build -c opt --config=android_arm64
//tensorflow/lite/tools/benchmark:benchmark_model``) or download the nightly
prebuilt binary from the TFLite performance-measurement page.
"""
from __future__ import annotations

import os
import pathlib
import re
import shlex
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence

from isp_tf.errors import IspTfError, MissingFileError

DEVICE_DIR = "/data/local/tmp"
DELEGATES = ("cpu", "nnapi", "gpu")

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"

# "INFO: ", "VERBOSE: ", "WARNING: ", "ERROR: " (the tool's own logger)
_TOOL_PREFIX = re.compile(r"^(?:INFO|VERBOSE|WARNING|ERROR|DEBUG):\s?")
# logcat "brief"/"time" format: "07-08 15:34:26.201 I/tflite  ( 5395): "
_LOGCAT_TIME = re.compile(
    r"^(?:\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+)?[VDIWEF]/[^(:]*\(\s*\d+\):\s?")
# logcat "threadtime" format: "07-08 15:34:26.201  5395  5395 I tflite  : "
_LOGCAT_THREADTIME = re.compile(
    r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+\S+\s*:\s?")

_TIMINGS = re.compile(
    rf"Inference timings in us:\s*Init:\s*(?P<init>{_NUM}),\s*First inference:\s*(?P<first>{_NUM}),"
    rf"\s*Warmup \(avg\):\s*(?P<warmup>{_NUM}),\s*Inference \(avg\):\s*(?P<avg>{_NUM})")
_DELTA = re.compile(
    rf"Memory footprint delta from the start of the tool \(MB\):\s*init=(?P<init>{_NUM})\s+overall=(?P<overall>{_NUM})")
_OLD_PEAK = re.compile(
    rf"Peak memory footprint \(MB\):\s*init=(?P<init>{_NUM})\s+overall=(?P<overall>{_NUM})")
_MONITORED = re.compile(
    rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*(?P<peak>{_NUM})")
_STATUS_LINE = re.compile(rf"^-\s*(?P<name>Vm\w+)\s*:\s*(?P<value>{_NUM})\s*MB")
_STATS = re.compile(r"\bcount=\d+")
_STAT_FIELD = re.compile(rf"\b(?P<key>count|first|curr|min|max|avg|std|p5|median|p95)=(?P<value>{_NUM})")
_REPLACED = re.compile(
    r"Replacing (?P<replaced>\d+) out of (?P<total>\d+) node\(s\) with delegate \((?P<name>[^)]*)\) node,"
    r"\s*yielding (?P<partitions>\d+) partitions?")
_FULLY = re.compile(r"will be completely executed by the delegate")
_PARTIALLY = re.compile(r"will be partially executed by the delegate w/ (?P<kernels>\d+) delegate kernels?")
_NOT_DELEGATED = re.compile(r"will not be executed by the delegate")
_ACCELERATORS = re.compile(r"NNAPI accelerators available:\s*\[(?P<names>[^\]]*)\]")

#: Keys of :func:`parse_benchmark_output`'s result (all present, ``None`` where absent).
RESULT_KEYS = (
    "init_us", "first_us", "warmup_avg_us", "avg_us",
    "count", "min_us", "max_us", "std_us", "median_us", "p5_us", "p95_us",
    "init_mb", "overall_mb", "peak_mb", "vmrss_mb", "vmhwm_mb", "memory_format",
    "delegate", "nodes_delegated", "nodes_total", "partitions",
    "fully_delegated", "delegate_kernels", "nnapi_accelerators",
)


class AdbError(IspTfError, RuntimeError):
    """adb or the phone cannot run the benchmark (no device, unauthorized, missing binary...)."""


def strip_prefix(line: str) -> str:
    """One output line without its logcat and/or ``INFO:``-style prefix."""
    line = line.strip()
    for pattern in (_LOGCAT_THREADTIME, _LOGCAT_TIME):
        match = pattern.match(line)
        if match:
            line = line[match.end():]
            break
    return _TOOL_PREFIX.sub("", line.strip(), count=1).strip()


def _number(text: str) -> float:
    return float(text)


def parse_benchmark_output(text: str) -> Dict[str, object]:
    """Parse the output of TFLite's ``benchmark_model`` into a flat dict.

    Returns every key of :data:`RESULT_KEYS`; a figure the text does not
    contain is ``None``.  Times are in microseconds (``*_us``), memory in MB
    (``*_mb``).  ``init_mb`` / ``overall_mb`` come from either memory line;
    ``memory_format`` says which (``"delta"`` for the current tool,
    ``"peak"`` for older builds that printed ``Peak memory footprint``).
    ``peak_mb`` is the periodic-monitoring peak
    (``--report_peak_memory_footprint=true``).  The run statistics
    (``count``, ``min_us``...) are those of the last ``count=`` line, i.e.
    the timed runs, not the warm-up.  Later occurrences of a line win (the
    logcat of several runs holds several).
    """
    result: Dict[str, object] = dict.fromkeys(RESULT_KEYS)
    for raw_line in str(text).splitlines():
        line = strip_prefix(raw_line)
        if not line:
            continue
        match = _TIMINGS.search(line)
        if match:
            result.update(init_us=_number(match["init"]), first_us=_number(match["first"]),
                          warmup_avg_us=_number(match["warmup"]), avg_us=_number(match["avg"]))
            continue
        match = _DELTA.search(line) or _OLD_PEAK.search(line)
        if match:
            result.update(init_mb=_number(match["init"]), overall_mb=_number(match["overall"]),
                          memory_format="delta" if match.re is _DELTA else "peak")
            continue
        match = _MONITORED.search(line)
        if match:
            result["peak_mb"] = _number(match["peak"])
            continue
        match = _STATUS_LINE.match(line)
        if match and match["name"] in ("VmRSS", "VmHWM"):
            result[match["name"].lower() + "_mb"] = _number(match["value"])
            continue
        if _STATS.match(line):
            fields = {m["key"]: _number(m["value"]) for m in _STAT_FIELD.finditer(line)}
            if "avg" not in fields:  # the warm-up line "count=1 curr=..." has no avg
                continue
            result["count"] = int(fields["count"])
            for key in ("min", "max", "std", "median", "p5", "p95"):
                result[key + "_us"] = fields.get(key)
            continue
        match = _REPLACED.search(line)
        if match:
            result.update(delegate=match["name"], nodes_delegated=int(match["replaced"]),
                          nodes_total=int(match["total"]), partitions=int(match["partitions"]))
            continue
        if _FULLY.search(line):
            result.update(fully_delegated=True, delegate_kernels=1)
            continue
        match = _PARTIALLY.search(line)
        if match:
            result.update(fully_delegated=False, delegate_kernels=int(match["kernels"]))
            continue
        if _NOT_DELEGATED.search(line):
            result.update(fully_delegated=False, delegate_kernels=0)
            continue
        match = _ACCELERATORS.search(line)
        if match:
            result["nnapi_accelerators"] = [n.strip() for n in match["names"].split(",") if n.strip()]
    return result


# --------------------------------------------------------------------------
# adb orchestration
# --------------------------------------------------------------------------
def parse_devices(text: str) -> Dict[str, str]:
    """``adb devices`` output -> {serial: state} (state: device, unauthorized, offline...)."""
    devices: Dict[str, str] = {}
    for line in str(text).splitlines():
        line = line.strip()
        if not line or line.startswith("List of devices") or line.startswith("*"):
            continue
        parts = line.split()
        if len(parts) >= 2:
            devices[parts[0]] = parts[1]
    return devices


def delegate_flags(delegate: str, threads: int) -> List[str]:
    """``benchmark_model`` flags for one delegate (``cpu`` / ``nnapi`` / ``gpu``)."""
    if delegate not in DELEGATES:
        raise AdbError(f"unknown delegate {delegate!r}; choose one of {', '.join(DELEGATES)}")
    flags = [f"--num_threads={int(threads)}"]
    if delegate == "nnapi":
        flags.append("--use_nnapi=true")
    elif delegate == "gpu":
        flags.append("--use_gpu=true")
    return flags


class AdbBenchmark:
    """Run ``benchmark_model`` on one phone.

    Args:
      binary: local path of an Android ``benchmark_model`` executable.
      serial: device serial (``adb -s``); needed when several are attached.
      adb: the adb executable (default: ``adb`` on ``PATH``).
      timeout_s: limit for one adb call.

    ``connect()`` checks the device and pushes the binary; ``run(model, ...)``
    pushes one model and returns the parsed output plus the command line.
    """

    def __init__(self, binary, serial: Optional[str] = None, adb: str = "adb",
                 timeout_s: float = 900.0):
        self.binary = pathlib.Path(binary) if binary else None
        self.serial = serial
        self.adb = adb
        self.timeout_s = timeout_s
        self.remote_binary = f"{DEVICE_DIR}/benchmark_model"

    # -- low level -----------------------------------------------------------
    def _call(self, *args: str, check: bool = True) -> str:
        exe = shutil.which(self.adb) if os.sep not in self.adb else self.adb
        if not exe or not os.path.exists(exe):
            raise AdbError(f"adb not found ({self.adb!r} is not on PATH): install Android platform-tools "
                           "(Debian/Ubuntu: apt-get install adb)")
        command = [exe] + (["-s", self.serial] if self.serial else []) + list(args)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise AdbError(f"`{' '.join(command)}` took longer than {self.timeout_s:.0f} s") from exc
        output = (done.stdout or "") + (done.stderr or "")
        if check and done.returncode != 0:
            raise AdbError(f"`adb {' '.join(args)}` failed (exit {done.returncode}): {output.strip()[-500:]}")
        return output

    def shell(self, command: str, check: bool = True) -> str:
        return self._call("shell", command, check=check)

    # -- steps ---------------------------------------------------------------
    def check_device(self) -> str:
        """The serial of the one usable device; :class:`AdbError` otherwise."""
        devices = parse_devices(self._call_devices())
        if self.serial:
            state = devices.get(self.serial)
            if state is None:
                listed = ", ".join(devices) or "none"
                raise AdbError(f"device {self.serial!r} is not attached (attached: {listed})")
            candidates = {self.serial: state}
        else:
            candidates = devices
        if not candidates:
            raise AdbError("no Android device found by `adb devices`: connect a phone with USB debugging "
                           "enabled (or `adb connect HOST:PORT`)")
        bad = {s: st for s, st in candidates.items() if st != "device"}
        for serial, state in bad.items():
            if len(candidates) == 1 and state == "unauthorized":
                raise AdbError(f"device {serial} is unauthorized: unlock the phone and accept the "
                               "'Allow USB debugging' prompt, then run again")
            if len(candidates) == 1:
                raise AdbError(f"device {serial} is {state}: reconnect it (adb reconnect) and run again")
        ready = [s for s, st in candidates.items() if st == "device"]
        if len(ready) > 1:
            raise AdbError(f"several devices attached ({', '.join(ready)}): choose one with --serial")
        if not ready:
            raise AdbError("no usable device: " + ", ".join(f"{s} is {st}" for s, st in bad.items()))
        self.serial = ready[0]
        return self.serial

    def _call_devices(self) -> str:
        serial, self.serial = self.serial, None  # `adb -s X devices` would fail for a missing X
        try:
            return self._call("devices")
        finally:
            self.serial = serial

    def connect(self) -> str:
        """Check the binary and the device, push the binary; returns the serial."""
        if self.binary is None:
            raise MissingFileError("--adb needs --benchmark-binary PATH: TFLite's benchmark_model for "
                                   "Android (build it with bazel or download the prebuilt nightly binary)")
        if not self.binary.is_file():
            raise MissingFileError(f"{self.binary}: benchmark_model binary not found; pass the path of "
                                   "TFLite's Android benchmark_model executable with --benchmark-binary")
        serial = self.check_device()
        self._call("push", str(self.binary), self.remote_binary)
        self.shell(f"chmod +x {self.remote_binary}")
        return serial

    def command_line(self, remote_model: str, delegate: str, threads: int,
                     extra: Sequence[str] = ()) -> str:
        args = [self.remote_binary, f"--graph={remote_model}"] + delegate_flags(delegate, threads)
        args += ["--report_peak_memory_footprint=true"] + list(extra)
        return " ".join(shlex.quote(a) for a in args)

    def run(self, model_path, delegate: str = "cpu", threads: int = 4,
            extra: Sequence[str] = ()) -> Dict[str, object]:
        """Push ``model_path``, run the benchmark, return the parsed figures.

        Adds ``status`` (``"ok"`` or ``"error"``), ``command`` and, on error,
        ``message`` (the end of the tool's output).
        """
        model_path = pathlib.Path(model_path)
        remote = f"{DEVICE_DIR}/{model_path.name}"
        self._call("push", str(model_path), remote)
        command = self.command_line(remote, delegate, threads, extra)
        output = self.shell(command, check=False)
        parsed = parse_benchmark_output(output)
        parsed["command"] = f"adb shell {command}"
        if parsed["avg_us"] is None:
            parsed["status"] = "error"
            parsed["message"] = output.strip()[-800:] or "benchmark_model printed nothing"
        else:
            parsed["status"] = "ok"
        self.shell(f"rm -f {shlex.quote(remote)}", check=False)
        return parsed
