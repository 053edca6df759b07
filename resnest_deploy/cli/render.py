"""Rich tables for the CLI."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table

_console = Console()


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Print a simple table; the first column left-aligned, the rest right-aligned."""
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    _console.print(table)


def print_checks(title: str, checks: Iterable) -> None:
    """Print pass/fail lines of objects with ``name``, ``passed`` and ``detail``."""
    table = Table(title=title, title_justify="left")
    table.add_column("check")
    table.add_column("verdict")
    table.add_column("detail")
    for c in checks:
        mark = "-" if c.passed is None else ("[green]pass[/]" if c.passed else "[bold red]FAIL[/]")
        table.add_row(c.name, mark, c.detail)
    _console.print(table)
