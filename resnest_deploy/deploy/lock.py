"""One deploy at a time per run folder: an exclusive OS lock (``flock``) on ``<run>/.deploy.lock``, held for the
whole run. The kernel releases it when the process ends, however it ends, so a crash never leaves a stale lock;
the file only says who holds it, for the message a second run prints."""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ResnestDeployError

LOCK_FILE = ".deploy.lock"


class RunFolderBusyError(ResnestDeployError):
    """Another deploy holds the run folder."""


@contextmanager
def run_lock(run_dir: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the run folder's lock for the block (creating the folder if needed).

    Args:
        run_dir: The run folder.
        wait: Wait for another run to finish instead of refusing at once.

    Raises:
        RunFolderBusyError: Another process holds the lock and ``wait`` is off (the message names it).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                raise RunFolderBusyError(f"{run_dir} is in use by another deploy ({holder}); wait for it to finish, "
                                         "pass --wait to queue behind it, or give another --output") from None
            fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C still interrupts the wait (the signal handler raises)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "a process that has not written its name yet"
