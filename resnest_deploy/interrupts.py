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
# What was in progress when an interrupt unwound the stack (the contexts below are gone by the time the CLI
# reports it): the innermost stage and the outermost target.
_at_interrupt: dict[str, object] = {}


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)


def _trace(name: str) -> None:
    """Append ``<seconds since epoch> <step>`` to $RESNEST_DEPLOY_TRACE, when set (for timing runs from outside
    and for tests that must interrupt a given step)."""
    path = os.environ.get("RESNEST_DEPLOY_TRACE")
    if path:
        import time

        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.time():.3f} {name}\n")


def pause_point(name: str) -> None:
    """Test hook: when ``$RESNEST_DEPLOY_PAUSE_AT`` is ``name``, trace ``paused at NAME`` and wait there for a
    signal, so a test interrupts exactly this point instead of guessing with sleeps. A no-op otherwise."""
    if os.environ.get("RESNEST_DEPLOY_PAUSE_AT") != name:
        return
    import time

    _trace(f"paused at {name}")
    while True:  # the signal handler raises out of the sleep
        time.sleep(3600)


def _handler(signum: int, _frame: object) -> None:
    global _received
    _received = signum
    raise Interrupted(signum)


def install() -> None:
    """Make SIGINT and SIGTERM raise :class:`Interrupted` (main thread only), and let a write past the file-size
    limit fail as an error (EFBIG) instead of killing the process with SIGXFSZ before it can clean up."""
    reset()
    for signum in EXIT_CODES:
        signal.signal(signum, _handler)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


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
    except (Interrupted, KeyboardInterrupt):
        _at_interrupt["target"] = target  # unwinding outwards: the outermost target is recorded last
        raise
    finally:
        if target in _targets:
            _targets.remove(target)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Name the step in progress, for the interrupt message."""
    _stage.append(name)
    _trace(name)
    depth = len(_stage)
    try:
        pause_point(name)
        yield
    except (Interrupted, KeyboardInterrupt):
        _at_interrupt.setdefault("stage", _stage[-1])  # unwinding outwards: keep the innermost step
        raise
    finally:
        del _stage[depth - 1:]


def set_stage(name: str) -> None:
    """Replace the innermost step name (for code that reports stages as a sequence of calls)."""
    if _stage:
        _stage[-1] = name
    else:
        _stage.append(name)
    _trace(name)
    pause_point(name)


def describe() -> str:
    """One line: what was interrupted and whether its output was written."""
    stage = _at_interrupt.get("stage") or (_stage[-1] if _stage else None)
    target = _at_interrupt.get("target") or (_targets[0] if _targets else None)
    where = f" during {stage}" if stage else ""
    if not isinstance(target, _Target):
        return f"interrupted{where}"
    if _stat(target.path) == target.before:
        return f"interrupted{where}; nothing written at {target.path}"
    return f"interrupted{where}; {target.path} was written before the interrupt"


def ignore() -> None:
    """Ignore further signals (the work is done; the interpreter is shutting down)."""
    for signum in EXIT_CODES:
        signal.signal(signum, signal.SIG_IGN)


def reset() -> None:
    """Forget targets, stages and the last interrupt."""
    global _received
    _received = None
    _targets.clear()
    _stage.clear()
    _at_interrupt.clear()
