"""Small helpers shared by every subpackage (no TensorFlow import).

Atomic writes: every file a command produces (PNG, DNG, weights, .tflite,
JSON) is written under a temporary name in the folder of its final name
(``.NAME.tmp-XXXX``), flushed and ``fsync``-ed, renamed over the final name
(``os.replace``, atomic on POSIX within one file system), and the folder is
``fsync``-ed so the rename itself survives a power cut.  A process killed at
any moment therefore leaves either the old file or the complete new one under
the final name, never a half-written one (at worst a stale ``.NAME.tmp-*``
beside it).  A full disk or a file-size limit ends in one
:class:`~isp_tf.errors.OutputWriteError` naming the file, and earlier outputs
are untouched.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import pathlib
import tempfile

__all__ = ["atomic_path", "atomic_write", "fsync_dir", "is_disk_full"]

#: errno values meaning "the device (or this process's limit) has no room for the file"
_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
#: how libraries that drop ``errno`` (h5py, TensorFlow) spell the same failures
_FULL_TEXT = ("no space left on device", "file too large", "disk quota exceeded",
              "errno = 28", "errno = 27", "errno = 122")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the disk or the file-size limit is full."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return True
        if any(text in str(exc).lower() for text in _FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _write_error(path, exc: BaseException):
    """The :class:`OutputWriteError` for a failed write of ``path`` (``None``: not a disk problem)."""
    from isp_tf.errors import OutputWriteError

    if isinstance(exc, OutputWriteError) or not is_disk_full(exc):
        return None
    return OutputWriteError(f"{path}: cannot be written, no space left on the device (or over the "
                            f"file-size limit); free some space or choose another output folder "
                            f"(earlier outputs are intact)")


def fsync_dir(folder) -> None:
    """``fsync`` a folder, so a rename into it is on disk (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _publish(tmp, path) -> None:
    """Give ``tmp`` the permissions of a normally created file, rename it to ``path``, sync the folder."""
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600 files
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _fail(tmp, path, exc):
    """Remove the temporary file; turn a full disk into an OutputWriteError."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    if isinstance(exc, Exception):
        error = _write_error(path, exc)
        if error is not None:
            raise error from exc


def _mkstemp(path: pathlib.Path, prefix: str, suffix: str = ""):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    except OSError as exc:
        error = _write_error(path, exc)
        if error is not None:
            raise error from exc
        raise


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path``; on success sync it and rename it over ``path``.

    A crash (or Ctrl-C) leaves the old file intact and no half-written one::

        with atomic_write("out.png") as f:
            f.write(data)
    """
    path = pathlib.Path(path)
    fd, tmp = _mkstemp(path, f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException as exc:
        _fail(tmp, path, exc)
        raise


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` for writers that need a file name
    (``model.save_weights``, ``imageio.imwrite``); on success it is synced and
    renamed over ``path``."""
    path = pathlib.Path(path)
    fd, tmp = _mkstemp(path, f".{path.stem}.tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)  # the writer closed it; make its bytes durable before the rename
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _publish(tmp, path)
    except BaseException as exc:
        _fail(tmp, path, exc)
        raise


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
