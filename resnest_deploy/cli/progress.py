"""The rich progress bar handed to library functions as their one progress callback
(:data:`resnest_deploy.progress.ProgressFn`)."""

from __future__ import annotations

from collections.abc import Iterator
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

from ..progress import ProgressFn


@contextmanager
def progress_bar(label: str, *, in_bytes: bool = False) -> Iterator[ProgressFn]:
    """A bar that shows the current phase after ``label`` and restarts for each phase; yields
    ``update(phase, done, total)``. ``in_bytes`` shows sizes and time left (downloads) instead of counts."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn()) if in_bytes \
        else (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
              TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(escape(label), total=None)

        def update(phase: str, done: int, total: int | None) -> None:
            bar.update(task, description=escape(f"{label}: {phase}"), completed=done, total=total)

        yield update
