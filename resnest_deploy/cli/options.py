"""Shared pieces of the commands' options: defaults read from the library's Options dataclasses, comma-separated
list values checked against their choices, and flags shown without a value type in ``--help``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

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


_INVOCATION: list[str] = []


def record_invocation(argv: list[str]) -> None:
    """Remember the command line ``main`` was given (recorded in run summaries and reports)."""
    _INVOCATION[:] = ["resnest-deploy", *argv]


def invocation() -> tuple[str, ...]:
    return tuple(_INVOCATION)


# Options that several commands take, declared once: the same name, metavar and meaning everywhere (the help text
# a command needs beyond that goes in its own declaration).
Arch = Annotated[str, typer.Option("--arch", metavar="ARCH", help="Registered architecture, e.g. resnest50.")]
Weights = Annotated[Path | None, typer.Option(
    "--weights", metavar="FILE",
    help="Checkpoint (.pth/.pt/.safetensors) [default: random init, BatchNorm re-estimated].")]
CalibData = Annotated[str | None, typer.Option(
    "--calib-data", metavar="DIR|LIST|synthetic",
    help="Calibration images: a folder (class tree or flat), a list file, or 'synthetic' (pipeline check only).")]
CalibSize = Annotated[int, typer.Option("--calib-size", min=1, metavar="N",
                                        help="Calibration images, sampled with --seed.")]
Seed = Annotated[int, typer.Option("--seed", min=0, metavar="N",
                                   help="Seed of random init, image sampling and synthetic inputs.")]
ImgSize = Annotated[int | None, typer.Option("--img-size", min=1, metavar="N",
                                             help="Square input size [default: the arch's or artifact's own].")]
Samples = Annotated[int, typer.Option("--samples", min=1, metavar="N", help="Inputs compared with eager.")]
Warmup = Annotated[int, typer.Option("--warmup", min=0, metavar="N", help="Untimed rounds before measuring.")]
Iters = Annotated[int, typer.Option("--iters", min=1, metavar="N", help="Timed rounds (each runs every contender).")]
AccuracyData = Annotated[str | None, typer.Option(
    "--accuracy-data", metavar="DIR", help="Images an INT8 accuracy budget is measured on: a class-per-subfolder "
                                           "tree for --max-accuracy-drop, any images for --min-agreement.")]
MaxAccuracyDrop = Annotated[float | None, typer.Option(
    "--max-accuracy-drop", metavar="PTS", help="INT8: keep the most harmful blocks float until top-1 on "
    "--accuracy-data is within PTS points of FP32 (none in budget: exit 1, best mix written as *.over-budget.onnx).")]
MinAgreement = Annotated[float | None, typer.Option(
    "--min-agreement", metavar="FRACTION", help="INT8: as --max-accuracy-drop, for unlabelled images: top-1 "
                                                "agreement with FP32 of at least FRACTION (0.99).")]
ClassIndex = Annotated[Path | None, typer.Option(
    "--class-index", metavar="FILE", help="Class folders -> indices: JSON (name->index, Keras index->[synset,label], "
                                          "list) or text, one class per line.")]
MaxTrials = Annotated[int, typer.Option("--max-trials", min=1, metavar="N",
                                        help="The most mixes an accuracy-budget search measures.")]
Data = Annotated[Path | None, typer.Option(
    "--data", metavar="DIR", help="Folder of images (class folders give accuracy and Triton's labels) [default: "
                                  "seeded synthetic inputs].")]
Profile = Annotated[str, typer.Option("--profile", metavar="MIN:OPT:MAX",
                                      help="Engine optimization profile (one number N for N:N:N).")]
BenchBatch = Annotated[str, typer.Option("--bench-batch", metavar="N,N,...",
                                         parser=comma_list(positive_int, "batch size"),
                                         help="Batch sizes to time, each a row per contender.")]
Json = Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print JSON instead of tables.")]
