"""The one command-line runner: the same error line and exit codes for every command.

Every ``python -m isp_tf.<verb>`` (and ``export/*.py``, ``benchmarks.run``)
runs its body through :func:`run_command`:

====  ==========================================================================
exit  meaning
====  ==========================================================================
0     done
1     some inputs of a batch failed (the others were written), or an export
      would not be fully delegated by NNAPI 1.2 (``NNAPIValidationError``)
2     bad input: usage, unknown model, missing or mismatched file, impossible
      size... (one ``error: ...`` line naming the input and the reason)
130   interrupted (Ctrl-C); whatever was written is complete (atomic writes)
====  ==========================================================================

A file-system error on a named path (``OSError`` with a file name: an output
folder that is a file, no permission...) is bad input too: ``error: PATH: reason``,
exit 2.  An unexpected exception (a bug, not bad input) prints one ``error:`` line too,
with its type and first line, and exits 1; ``--debug`` or ``ISP_TF_DEBUG=1``
shows the traceback instead.  An isp_tf error that TensorFlow wrapped in its
own exception (raised inside a ``tf.data`` map function, for instance) is
recognised by its class name in the message and reported as itself.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Callable, Optional

from isp_tf import errors

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SOME_FAILED", "add_debug_flag",
           "debug_enabled", "error", "os_error_message", "run_command", "wrapped_isp_tf_error"]

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

_ERROR_NAMES = {name for name, obj in vars(errors).items()
                if isinstance(obj, type) and issubclass(obj, errors.IspTfError)}
_WRAPPED = re.compile(r"\b(" + "|".join(sorted(_ERROR_NAMES)) + r")\b:?\s*(.*)")


def error(message: str, file=None) -> None:
    """Print ``error: message`` (one line per failure) to stderr."""
    print(f"error: {message}", file=file or sys.stderr, flush=True)


def debug_enabled(args=None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("ISP_TF_DEBUG", "") not in ("", "0")


def add_debug_flag(parser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help="show Python tracebacks of unexpected errors (also: ISP_TF_DEBUG=1)")


def wrapped_isp_tf_error(exc: BaseException) -> Optional[str]:
    """The message of an isp_tf error that TensorFlow re-raised as its own exception, if any."""
    if not type(exc).__module__.startswith("tensorflow"):
        return None
    for line in str(exc).splitlines():
        match = _WRAPPED.search(line)
        if match:
            return match.group(2).strip() or line.strip()
    return None


def run_command(body: Callable[[], int], *, debug: bool = False,
                interrupted: str = "interrupted", wrapped_hint: str = "") -> int:
    """Run ``body() -> exit code`` and map what it raises to one error line and an exit code.

    ``interrupted``: the line printed on Ctrl-C; ``wrapped_hint``: appended to
    the message of an isp_tf error TensorFlow wrapped (e.g. how to resume).
    """
    debug = debug or debug_enabled()
    try:
        return int(body() or 0)
    except errors.IspTfError as exc:
        if debug:
            raise
        error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except SystemExit:
        raise
    except OSError as exc:
        if debug or not exc.filename:
            raise
        error(os_error_message(exc))
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - a bug or a resource problem: one line, not a traceback
        if debug:
            raise
        wrapped = wrapped_isp_tf_error(exc)
        if wrapped is not None:
            error(wrapped + wrapped_hint)
            return EXIT_BAD_INPUT
        first = (str(exc).strip().splitlines() or [""])[0]
        hint = resource_hint(exc)
        error(f"{type(exc).__name__}: {first}{hint} (run with --debug or ISP_TF_DEBUG=1 for the traceback)")
        return EXIT_SOME_FAILED


def os_error_message(exc: OSError) -> str:
    """``<path>: <reason>`` for a file-system error on a named path (an output folder that is a
    file, no permission, a full disk...): bad input or environment, not a bug."""
    import errno

    path = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"{path}: is a file where a folder is needed ({exc.strerror})"
    return f"{path}: {exc.strerror or exc}"


def resource_hint(exc: BaseException) -> str:
    """A hint for resource exhaustion (out of memory), else ``""``."""
    text = f"{type(exc).__name__} {exc}".lower()
    if isinstance(exc, MemoryError) or "resourceexhausted" in text or "out of memory" in text or "oom" in text:
        return "; out of memory: lower --batch-size / --patch-size, or use --tile"
    return ""
