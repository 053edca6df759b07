"""Ctrl-C and SIGTERM: stop at once, leave no partial file, and say plainly what was (not) written.

The CLI installs :func:`install`; a signal then raises :class:`Interrupted`, a ``BaseException`` so that no
``except Exception`` in a library (torch's exporter catches broadly and may even retry) can turn it into a
failure report. Long calls into other libraries are followed by :func:`check`, which re-raises an interrupt that
such a library swallowed. Operations name the file they produce with :func:`producing`, so the one line the
user sees can say whether that file was written.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(BaseException):
    """The user pressed Ctrl-C or the process got SIGTERM."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 130)


@dataclass
class _Target:
    path: Path
    before: tuple[int, int] | None


_received: int | None = None
_targets: list[_Target] = []
_stage: list[str] = []


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)


def _handler(signum: int, _frame: object) -> None:
    global _received
    _received = signum
    raise Interrupted(signum)


def install() -> None:
    """Make SIGINT and SIGTERM raise :class:`Interrupted` (main thread only)."""
    global _received
    _received = None
    for signum in EXIT_CODES:
        signal.signal(signum, _handler)


def check() -> None:
    """Raise :class:`Interrupted` if a signal arrived, even when the code it interrupted swallowed it."""
    if _received is not None:
        raise Interrupted(_received)


@contextmanager
def producing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Name the file the enclosed work produces, for the interrupt message."""
    target = _Target(Path(path), _stat(Path(path)))
    _targets.append(target)
    try:
        yield
    finally:
        if target in _targets:
            _targets.remove(target)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Name the step in progress, for the interrupt message."""
    _stage.append(name)
    depth = len(_stage)
    try:
        yield
    finally:
        del _stage[depth - 1:]


def set_stage(name: str) -> None:
    """Replace the innermost step name (for code that reports stages as a sequence of calls)."""
    if _stage:
        _stage[-1] = name
    else:
        _stage.append(name)


def describe() -> str:
    """One line: what was interrupted and whether its output was written."""
    where = f" during {_stage[-1]}" if _stage else ""
    if not _targets:
        return f"interrupted{where}"
    target = _targets[0]
    if _stat(target.path) == target.before:
        return f"interrupted{where}; nothing written at {target.path}"
    return f"interrupted{where}; {target.path} was written before the interrupt"


def reset() -> None:
    """Forget targets and stages (after the CLI has reported an interrupt)."""
    _targets.clear()
    _stage.clear()
