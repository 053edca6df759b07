"""The one progress callback every long operation takes: ``progress(phase, done, total)``.

``phase`` names what is in progress (a stage, a step, ``calibrate``); ``done`` counts finished units of it and
``total`` is their number, or None when unknown (a download without a length). The CLI draws it as a bar.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, "int | None"], None]


def ignore(_phase: str, _done: int, _total: int | None) -> None:
    """A progress callback that shows nothing."""


def phase(progress: ProgressFn | None, name: str) -> Callable[[int, int | None], None]:
    """``progress`` bound to one phase: ``update(done, total)`` (a no-op when ``progress`` is None)."""
    report = progress or ignore
    return lambda done, total: report(name, done, total)
