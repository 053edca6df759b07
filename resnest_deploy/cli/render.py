"""Rich tables for the CLI. Every cell is escaped: file names like ``model[v2].onnx`` are text, not markup."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..checks import Check

_console = Console()


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Print a simple table; the first column left-aligned, the rest right-aligned."""
    table = Table(title=escape(title), title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(escape(column), justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    _console.print(table)


def print_checks(title: str, checks: Iterable[Check]) -> None:
    """Print pass/fail lines (a check with ``passed`` None is a value reported without a verdict)."""
    table = Table(title=escape(title), title_justify="left")
    table.add_column("check")
    table.add_column("verdict")
    table.add_column("detail")
    for c in checks:
        mark = "-" if c.passed is None else ("[green]pass[/]" if c.passed else "[bold red]FAIL[/]")
        table.add_row(escape(c.name), mark, escape(c.detail))
    _console.print(table)
