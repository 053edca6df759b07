"""The tool's vocabulary, defined once: precisions, the runtimes a graph is made for, the kinds of artifact a run
makes, and how engine files are named. Every command, manifest and report uses these names (the string forms are
what users type and what files record)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path


class Name(str, Enum):
    """An enum whose members are their string form everywhere: in f-strings, JSON and comparisons with text."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)

    @classmethod
    def parse(cls, text: object, what: str) -> Name:
        """The member named ``text``.

        Raises:
            ConfigError: ``text`` names no member (the message lists them, naming ``what`` was given).
        """
        try:
            return cls(text)
        except ValueError:
            from .errors import ConfigError

            raise ConfigError(f"{what} takes one of {', '.join(cls.values())}, got {text!r}") from None


class Precision(Name):
    """The numbers a graph computes in: FP32, FP16-typed, or INT8 through explicit Q/DQ."""

    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class Runtime(Name):
    """What a graph is made for: TensorRT (any precision; signed symmetric Q/DQ placed for its fusions) or ONNX
    Runtime's CPU provider (U8S8 Q/DQ on every op it has an integer kernel for)."""

    tensorrt = "tensorrt"
    cpu = "cpu"


class ArtifactKind(Name):
    """One ONNX file a run makes: a precision for TensorRT, or the INT8 graph for ONNX Runtime's CPU kernels."""

    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"
    int8_cpu = "int8-cpu"

    @property
    def precision(self) -> Precision:
        return Precision.int8 if self is ArtifactKind.int8_cpu else Precision(self.value)

    @property
    def runtime(self) -> Runtime:
        return Runtime.cpu if self is ArtifactKind.int8_cpu else Runtime.tensorrt

    @classmethod
    def of(cls, precision: str, runtime: str = Runtime.tensorrt) -> ArtifactKind:
        """The kind of a graph of ``precision`` made for ``runtime``."""
        return cls.int8_cpu if Runtime(runtime) is Runtime.cpu else cls(Precision(precision).value)

    def file_name(self, stem: str) -> str:
        """``<stem>.onnx`` for FP32, ``<stem>.<kind>.onnx`` for the others."""
        return f"{stem}.onnx" if self is ArtifactKind.fp32 else f"{stem}.{self.value}.onnx"


# TensorRT engine files (TensorRT's own docs and Triton call them plans); the first is what `build` writes.
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def is_engine(path: str | Path) -> bool:
    """Whether a path names a TensorRT engine (by its suffix: .engine, .plan or .trt)."""
    return Path(path).suffix.lower() in ENGINE_SUFFIXES


def engine_path(onnx_path: str | Path) -> Path:
    """Where `build` writes the engine of an ONNX file by default: the same name with ``.engine``."""
    return Path(onnx_path).with_suffix(ENGINE_SUFFIXES[0])
