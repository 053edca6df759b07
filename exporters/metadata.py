"""What an artifact knows about itself: stored in ONNX ``metadata_props`` and in a JSON manifest beside the file.

Every later step (quantize, build, parity, bench) reads the architecture and input settings from here, so that a
user never has to repeat ``--arch`` or the input size for an artifact this tool produced.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from resnest_deploy import __version__
from resnest_deploy.atomic import write_text_atomic
from resnest_deploy.models import InputConfig, get_config
from resnest_deploy.models.config import resnest_input

META_PREFIX = "resnest_deploy."


@dataclass(frozen=True)
class ArtifactMeta:
    """Provenance and input settings of an exported artifact.

    Attributes:
        arch: Registered architecture name.
        num_classes: Classifier size.
        input: Eval input settings (size is the exported spatial size).
        weights: One-line weights description (file and hash, or random-init with seed).
        weights_sha256: Checkpoint SHA-256, if a checkpoint was used.
        seed: Seed of the random init and BatchNorm re-estimation, when no checkpoint was used.
        precision: ``fp32``, ``fp16`` or ``int8``.
        opset: ONNX default-domain opset.
        batch: ``dynamic`` or the fixed batch size.
        dynamic_hw: Whether height and width are dynamic.
        versions: Versions of the tool and of the libraries that made the file.
        extra: Step-specific records (calibration, quantization settings, ...).
    """

    arch: str
    num_classes: int
    input: InputConfig
    weights: str
    weights_sha256: str | None = None
    seed: int | None = None
    precision: str = "fp32"
    opset: int = 18
    batch: str = "dynamic"
    dynamic_hw: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactMeta:
        values = dict(data)
        raw_input = dict(values.pop("input"))
        for key in ("mean", "std"):
            raw_input[key] = tuple(raw_input[key])
        return cls(input=InputConfig(**raw_input), **values)

    def with_changes(self, **changes: Any) -> ArtifactMeta:
        return replace(self, **changes)


def library_versions(*extra: str) -> dict[str, str]:
    """Versions of this tool, Python, torch and onnx (plus ``extra`` module names when importable)."""
    import onnx
    import torch

    versions = {"resnest-deploy": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "onnx": onnx.__version__}
    for name in extra:
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            pass
    return versions


def write_metadata(model: Any, meta: ArtifactMeta) -> None:
    """Store ``meta`` in an ONNX ModelProto's ``metadata_props`` (one JSON value per field)."""
    keep = [p for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in meta.to_dict().items():
        entry = model.metadata_props.add()
        entry.key = META_PREFIX + key
        entry.value = json.dumps(value, sort_keys=True)


def read_metadata(model: Any) -> ArtifactMeta | None:
    """The :class:`ArtifactMeta` stored in a ModelProto, or None for files this tool did not make."""
    values = {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}
    if "arch" not in values:
        return None
    try:
        return ArtifactMeta.from_dict({k: json.loads(v) for k, v in values.items()})
    except (ValueError, TypeError):
        return None


def meta_for_model(model: Any, *, size: int, opset: int, batch: str, dynamic_hw: bool) -> ArtifactMeta:
    """Build the metadata of an export from a model made by :func:`resnest_deploy.models.create_model`."""
    cfg = model.config
    base = get_config(cfg.name).input
    # The official ResNeSt crop is a function of the size (S / (S + 32)); other families keep their fraction.
    inputs = resnest_input(size) if base.resize_mode == "crop_then_resize" else replace(base, size=size)
    info = model.weights_info
    return ArtifactMeta(
        arch=cfg.name, num_classes=cfg.num_classes, input=inputs, weights=info.description,
        weights_sha256=info.sha256, seed=info.seed, opset=opset, batch=batch, dynamic_hw=dynamic_hw,
        versions=library_versions("onnxscript", "onnxruntime"),
    )


def manifest_path(artifact: str | Path) -> Path:
    """Where the JSON manifest of an artifact lives: ``<file>.json`` beside it."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_manifest(artifact: Path, meta: ArtifactMeta, **fields: Any) -> Path:
    """Write the manifest beside ``artifact`` atomically: metadata plus any extra top-level fields."""
    body = {"artifact": artifact.name, **meta.to_dict(), **fields}
    return write_text_atomic(manifest_path(artifact), json.dumps(body, indent=2, sort_keys=False) + "\n")


ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def is_engine(path: str | Path) -> bool:
    return Path(path).suffix.lower() in ENGINE_SUFFIXES


def read_manifest(artifact: str | Path) -> dict[str, Any] | None:
    """The JSON manifest beside an artifact, or None when there is none or it is not JSON."""
    path = manifest_path(artifact)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def meta_from_manifest(manifest: dict[str, Any]) -> ArtifactMeta | None:
    """The :class:`ArtifactMeta` stored at the top level of a manifest (engines carry theirs there)."""
    names = set(ArtifactMeta.__dataclass_fields__)
    values = {k: v for k, v in manifest.items() if k in names}
    if values.get("arch") in (None, "unknown") or "input" not in values:
        return None
    try:
        return ArtifactMeta.from_dict(values)
    except (TypeError, ValueError, KeyError):
        return None
