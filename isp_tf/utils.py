"""Small helpers shared by every subpackage (no TensorFlow import)."""
from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp, path) -> None:
    """Give ``tmp`` the permissions of a normally created file, then rename it to ``path``."""
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600 files
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    A crash (or Ctrl-C) leaves the old file intact and no half-written one::

        with atomic_write("out.png") as f:
            f.write(data)
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` for writers that need a file name
    (``model.save_weights``, ``imageio.imwrite``); renamed over ``path`` on success."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        _publish(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
