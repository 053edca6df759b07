"""Shared pieces of the commands' options: defaults read from the library's Options dataclasses, comma-separated
list values checked against their choices, and flags shown without a value type in ``--help``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from enum import Enum
from types import SimpleNamespace
from typing import Any

import typer


def defaults(options_class: type) -> SimpleNamespace:
    """The field defaults of a library Options dataclass: the one source of the CLI's defaults."""
    values = {}
    for f in dataclasses.fields(options_class):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    return SimpleNamespace(**values)


def comma_list(kind: Callable[[str], Any] | type[Enum], what: str) -> Callable[[str], tuple]:
    """A parser for ``a,b,c`` values; each item is converted with ``kind`` (an Enum: one of its values).

    Bad items are a usage error naming the option's choices (typer prints it as one line, exit 2).
    """
    choices = [m.value for m in kind] if isinstance(kind, type) and issubclass(kind, Enum) else None

    def parse(value: str | tuple) -> tuple:
        if isinstance(value, tuple):
            return value
        items = [part.strip() for part in str(value).split(",") if part.strip()]
        if not items:
            raise typer.BadParameter(f"needs at least one {what}")
        parsed = []
        for item in items:
            if choices is not None and item not in choices:
                raise typer.BadParameter(f"{item!r} is not one of {', '.join(choices)}")
            try:
                parsed.append(kind(item))
            except ValueError:
                raise typer.BadParameter(f"{item!r} is not a {what}") from None
        return tuple(parsed)

    return parse


def one_of(kind: type[Enum], allowed: tuple[str, ...] | None = None) -> Callable[[str], Any]:
    """A parser for one value of ``kind`` (an Enum of the package's vocabulary), limited to ``allowed`` names when
    a command takes only some of them; a bad value is a usage error naming the choices."""
    choices = allowed or tuple(m.value for m in kind)

    def parse(value: str | Enum) -> Any:
        text = getattr(value, "value", value)
        if text not in choices:
            raise typer.BadParameter(f"{text!r} is not one of {', '.join(choices)}")
        return kind(text)

    return parse


def positive_int(text: str) -> int:
    """An integer >= 1 (for comma lists of batch sizes)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


FLAG = ""  # metavar for boolean flags: --help shows no value type after them
