"""Every injected fault is survived (tests/reliability/faults.py), and the atomic writer's own contract."""
import errno
import os

import pytest

from isp_tf.errors import OutputWriteError
from isp_tf.utils import atomic_path, atomic_write, is_disk_full
from faults import RECIPE, TOTAL_STEPS, draw_fault_steps, run_faults

# the scenarios run 11 processes (6 of them train); on a 2-core machine shared with other jobs this
# takes minutes, longer than pytest's default timeout; each process has its own 300 s limit (a hang fails)
pytestmark = pytest.mark.timeout(1800)

FAULTS = ("train-sigkill-resume", "train-sigint-resume", "infer-sigkill-mid-write", "infer-full-disk",
          "export-sigkill-mid-write")


@pytest.fixture(scope="module")
def fault_rows():
    return {row["name"]: row for row in run_faults()}


@pytest.mark.parametrize("name", FAULTS)
def test_fault_is_survived(fault_rows, name):
    row = fault_rows[name]
    assert row["survived"], row["detail"]


def test_every_fault_has_a_row(fault_rows):
    assert sorted(fault_rows) == sorted(FAULTS)


def test_fault_steps_are_seeded_and_fall_between_checkpoints():
    kills, sigint = draw_fault_steps(14)[:3], draw_fault_steps(14)[3]
    assert draw_fault_steps(14) == draw_fault_steps(14) and draw_fault_steps(14) != draw_fault_steps(15)
    assert kills == sorted(set(kills)) and all(k % RECIPE["checkpoint_every"] for k in kills)
    assert kills[-1] <= sigint < TOTAL_STEPS and sigint % RECIPE["checkpoint_every"]


def _enospc(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_one_clear_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(OutputWriteError, match=r"out\.png: cannot be written, no space left"):
        with atomic_write(out) as f:
            f.write(b"new")
    with pytest.raises(OutputWriteError, match="no space left"):
        with atomic_path(tmp_path / "w.weights.h5") as tmp:
            open(tmp, "wb").write(b"x")
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary file left


def test_other_write_errors_pass_through_and_leave_nothing(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with atomic_write(tmp_path / "a.bin") as f:
            f.write(b"half")
            1 / 0
    assert list(tmp_path.iterdir()) == []


def test_disk_full_is_recognised_through_wrapping_libraries():
    assert is_disk_full(OSError(errno.EFBIG, "File too large"))
    assert is_disk_full(OSError("Unable to create file (file write failed: errno = 28, error message = "
                                "'No space left on device')"))  # h5py drops errno
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert is_disk_full(wrapped)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_published_files_get_normal_permissions(tmp_path):
    with atomic_write(tmp_path / "a.bin") as f:
        f.write(b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o666 & ~mask


def test_first_ctrl_c_is_a_flag_read_between_steps_and_the_second_stops_at_once():
    import signal

    # as at a terminal, whatever this session inherited (started in the background, SIGINT is ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _check_first_and_second_ctrl_c()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_ignored_ctrl_c_stays_ignored():
    import signal

    from isp_tf.train.trainer import _Interrupt

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # nohup, or a job started with '&'
    try:
        with _Interrupt().installed():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_first_and_second_ctrl_c():
    import signal
    import threading

    from isp_tf.train.trainer import _Interrupt

    interrupt = _Interrupt()
    with interrupt.installed():
        os.kill(os.getpid(), signal.SIGINT)  # handled between bytecodes: no KeyboardInterrupt here
        for _ in range(1000):
            if interrupt.requested:
                break
        assert interrupt.requested
        with pytest.raises(KeyboardInterrupt):  # the default handler is back for the second one
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    seen = []
    thread = threading.Thread(target=lambda: seen.append(_Interrupt().installed().__enter__().requested))
    thread.start()
    thread.join()
    assert seen == [False] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
