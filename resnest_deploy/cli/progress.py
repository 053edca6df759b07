"""Rich progress bars handed to library functions as plain callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextmanager
def byte_progress(label: str) -> Iterator[Callable[[int, int | None], None]]:
    """A download bar; yields ``update(done_bytes, total_bytes_or_None)``."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), transient=True
    ) as bar:
        task = bar.add_task(escape(label), total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def stage_progress(label: str, stages: tuple[str, ...]) -> Iterator[Callable[[str], None]]:
    """A bar over named stages; yields ``advance(stage_name)``, called as each stage starts."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(escape(label), total=len(stages))
        started: list[str] = []

        def advance(stage: str) -> None:
            if started:
                bar.advance(task)
            started.append(stage)
            bar.update(task, description=escape(f"{label}: {stage}"))

        yield advance


@contextmanager
def count_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A bar over items; yields ``update(done, total)``."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(escape(label), total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def phase_progress(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """A bar that restarts for each phase (e.g. warm-up, measure); yields ``update(phase, done, total)``."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(escape(label), total=None)

        def update(phase: str, done: int, total: int) -> None:
            bar.update(task, description=escape(f"{label}: {phase}"), completed=done, total=total)

        yield update
