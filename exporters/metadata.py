"""What an artifact knows about itself: stored in ONNX ``metadata_props`` and in a JSON manifest beside the file.

Every later step (quantize, build, parity, bench) reads the architecture and input settings from here, so that a
user never has to repeat ``--arch`` or the input size for an artifact this tool produced.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from resnest_deploy.atomic import write_text_atomic
from resnest_deploy.errors import ArtifactError
from resnest_deploy.kinds import Precision, Runtime
from resnest_deploy.models import InputConfig, get_config
from resnest_deploy.versions import library_versions

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
        rsoftmax: How many rSoftMax patterns the graph must hold (the architecture's split-attention blocks),
            so graph checks need no model code.
        target: What the file is made for: ``tensorrt`` (any precision) or ``cpu`` (an ONNX Runtime CPU graph).
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
    rsoftmax: int | None = None
    target: str = "tensorrt"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactMeta:
        """Rebuild metadata from its dict, checking every field (files can be hand-edited or cut).

        Unknown keys are ignored (written by a later version of the tool).

        Raises:
            ValueError: A required field is missing, or a field has the wrong type or an impossible value.
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        missing = [name for name in ("arch", "num_classes", "input", "weights") if name not in values]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        values["input"] = _input_from_dict(values["input"])
        _expect(values, "arch", str, lambda v: bool(v))
        _expect(values, "num_classes", int, lambda v: v >= 1)
        _expect(values, "weights", str)
        _expect(values, "weights_sha256", (str, type(None)))
        _expect(values, "seed", (int, type(None)), lambda v: v is None or v >= 0)
        _expect(values, "precision", str, lambda v: v in Precision.values())
        _expect(values, "opset", int, lambda v: v >= 1)
        _expect(values, "batch", str, lambda v: v == "dynamic" or (v.isdigit() and int(v) >= 1))
        _expect(values, "dynamic_hw", bool)
        _expect(values, "versions", dict)
        _expect(values, "extra", dict)
        _expect(values, "rsoftmax", (int, type(None)), lambda v: v is None or v >= 0)
        _expect(values, "target", str, lambda v: v in Runtime.values())
        return cls(**values)

    def with_changes(self, **changes: Any) -> ArtifactMeta:
        return replace(self, **changes)


def _expect(values: dict[str, Any], name: str, kind: type | tuple[type, ...], ok: Any = None) -> None:
    """Raise ValueError naming ``name`` when its value (if present) has the wrong type or fails ``ok``."""
    if name not in values:
        return
    value = values[name]
    if isinstance(value, bool) and kind is int:
        raise ValueError(f"{name} must be {kind.__name__}, got {value!r}")
    if not isinstance(value, kind) or (ok is not None and not ok(value)):
        raise ValueError(f"{name} has an impossible value {value!r}")


def _input_from_dict(raw: Any) -> InputConfig:
    if not isinstance(raw, dict):
        raise ValueError("input must be a table of input settings")
    known = {f.name for f in fields(InputConfig)}
    values = {k: v for k, v in raw.items() if k in known}
    for key in ("mean", "std"):
        if key in values:
            value = values[key]
            if not (isinstance(value, list | tuple) and len(value) == 3
                    and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value)):
                raise ValueError(f"input.{key} must be three numbers")
            if key == "std" and any(x <= 0 for x in value):
                raise ValueError("input.std must be positive")
            values[key] = tuple(float(x) for x in value)
    checks = {"size": (int, lambda v: v >= 1), "crop_pct": ((int, float), lambda v: 0 < v <= 1),
              "interpolation": (str, lambda v: v in ("bilinear", "bicubic")),
              "resize_mode": (str, lambda v: v in ("crop_then_resize", "resize_then_crop"))}
    for key, (kind, ok) in checks.items():
        if key in values:
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, kind) or not ok(value):
                raise ValueError(f"input.{key} has an impossible value {value!r}")
    return InputConfig(**values)


def write_metadata(model: Any, meta: ArtifactMeta) -> None:
    """Store ``meta`` in an ONNX ModelProto's ``metadata_props`` (one JSON value per field)."""
    keep = [p for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in meta.to_dict().items():
        entry = model.metadata_props.add()
        entry.key = META_PREFIX + key
        entry.value = json.dumps(value, sort_keys=True)


def read_metadata(model: Any, source: str = "the model") -> ArtifactMeta | None:
    """The :class:`ArtifactMeta` stored in a ModelProto, or None for files this tool did not make.

    Raises:
        ArtifactError: The file carries this tool's metadata but it is damaged (cut, hand-edited, not JSON).
    """
    values = {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}
    if not values:
        return None
    try:
        return ArtifactMeta.from_dict({k: json.loads(v) for k, v in values.items()})
    except (ValueError, TypeError) as exc:
        raise ArtifactError(f"{source}: damaged resnest-deploy metadata ({exc}); export it again") from None


def meta_for_model(model: Any, *, size: int, opset: int, batch: str, dynamic_hw: bool) -> ArtifactMeta:
    """Build the metadata of an export from a model made by :func:`resnest_deploy.models.create_model`."""
    cfg = model.config
    info = model.weights_info
    return ArtifactMeta(
        arch=cfg.name, num_classes=cfg.num_classes, input=get_config(cfg.name).input.at_size(size),
        weights=info.description, weights_sha256=info.sha256, seed=info.seed, opset=opset, batch=batch,
        dynamic_hw=dynamic_hw, versions=library_versions(), rsoftmax=cfg.rsoftmax_count,
    )


def manifest_path(artifact: str | Path) -> Path:
    """Where the JSON manifest of an artifact lives: ``<file>.json`` beside it."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def manifest_text(artifact: Path, meta: ArtifactMeta, **fields: Any) -> str:
    """The manifest of ``artifact``: metadata plus any extra top-level fields, as JSON text."""
    body = {"artifact": artifact.name, **meta.to_dict(), **fields}
    return json.dumps(body, indent=2, sort_keys=False) + "\n"


def write_manifest(artifact: Path, meta: ArtifactMeta, **fields: Any) -> Path:
    """Write the manifest beside ``artifact`` atomically (for artifacts written before it; an artifact and its
    manifest written together use :func:`manifest_text` inside one ``atomic_paths`` group)."""
    return write_text_atomic(manifest_path(artifact), manifest_text(artifact, meta, **fields))


def read_manifest(artifact: str | Path) -> dict[str, Any] | None:
    """The JSON manifest beside an artifact, or None when there is none.

    Raises:
        ArtifactError: The manifest exists but is not a JSON object (cut or hand-edited).
    """
    path = manifest_path(artifact)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"{path}: damaged manifest ({type(exc).__name__}); build the artifact again") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: damaged manifest (not a JSON object); build the artifact again")
    return data


def meta_from_manifest(manifest: dict[str, Any], source: str = "the manifest") -> ArtifactMeta | None:
    """The :class:`ArtifactMeta` stored at the top level of a manifest (engines carry theirs there).

    Raises:
        ArtifactError: The manifest's metadata is damaged.
    """
    names = {f.name for f in fields(ArtifactMeta)}
    values = {k: v for k, v in manifest.items() if k in names}
    if values.get("arch") in (None, "unknown"):
        return None
    try:
        return ArtifactMeta.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{source}: damaged resnest-deploy metadata ({exc})") from None
