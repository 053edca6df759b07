"""Parity of an artifact against the eager model it came from, on seeded inputs or a folder of images."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .. import interrupts
from ..batching import fit_batch, run_batched
from resnest_deploy.calibration.budget import budget_record
from resnest_deploy.calibration.class_index import class_mapping
from resnest_deploy.calibration.images import ImageSet, find_images, iter_batches
from ..checks import Check
from ..errors import ConfigError, WeightsMismatchError
from resnest_deploy.exporters.graph import check_fits, load_artifact
from resnest_deploy.exporters.metadata import ArtifactMeta, read_manifest
from resnest_deploy.exporters.tensorrt_options import EngineRecord
from ..hashing import file_sha256
from ..kinds import is_engine
from ..metrics import ParityMetrics, Tolerances, compare_logits, judge
from ..progress import ProgressFn
from ..models import InputConfig, create_model, get_config
from ..models.synthetic import synthetic_images
from ..runners.factory import open_artifact_runner, target_note
from ..runners.torch_runner import TorchRunner
from .localize import Localization, localize
from .options import DEFAULT_SAMPLES, ParityOptions, validate_options
from .tolerances import Judgement, judgement_of

# Per-stage relative error over which --localize calls a stage diverged, by precision.
STAGE_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.15}


@dataclass(frozen=True)
class Flip:
    """A sample whose top-1 class differs between eager and the artifact."""

    sample: str
    eager: int
    artifact: int


@dataclass
class ParityResult:
    """Everything `parity` reports (see docs/parity.md for the JSON schema)."""

    artifact: str
    arch: str
    precision: str
    runner: str
    weights: str
    inputs: str
    metrics: ParityMetrics
    tolerances: Tolerances
    verdicts: list[Check]
    flips: list[Flip]
    skipped: list[tuple[str, str]]
    judgement: Judgement | None = None
    accuracy: dict[str, object] | None = None
    budget: dict[str, object] | None = None
    localization: Localization | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def to_dict(self) -> dict[str, object]:
        return {
            "schema": "resnest-deploy/parity/2", "artifact": self.artifact, "arch": self.arch,
            "precision": self.precision, "runner": self.runner, "weights": self.weights, "inputs": self.inputs,
            "passed": self.passed, "preset": self.judgement.preset if self.judgement else None,
            "judgement": self.judgement.reason if self.judgement else None,
            "metrics": self.metrics.to_dict(), "tolerances": self.tolerances.to_dict(),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "flips": [f.__dict__ for f in self.flips], "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "accuracy": self.accuracy, "accuracy_budget": self.budget, "localization": self.localization.to_dict() if self.localization else None,
            "notes": self.notes,
        }


@dataclass
class _Outputs:
    """Logits of both sides over every input, with the inputs' names and labels."""

    eager: np.ndarray
    artifact: np.ndarray
    names: list[str]
    labels: list[str | None]
    skipped: list[tuple[str, str]]
    runner: str
    first_batch: np.ndarray | None


def run_parity(options: ParityOptions, *, progress: ProgressFn | None = None) -> ParityResult:
    """Compare an artifact's outputs with the eager model's and judge them by the artifact's judgement.

    Args:
        options: What to compare.
        progress: Called with (``parity``, samples done, samples total) after each batch.

    Returns:
        The result; ``result.passed`` is False when any judged metric fails.

    Raises:
        ArtifactError: The artifact is missing or unreadable, or its metadata is damaged.
        ConfigError: Arch unknown or not matching the artifact; empty or unreadable image folder; bad options.
        CheckpointError, WeightsMismatchError: ``--weights`` is unreadable or not the artifact's checkpoint.
    """
    validate_options(options)
    proto, meta = load_artifact(options.artifact)
    table = (read_manifest(options.artifact) or {}).get("engine") if is_engine(options.artifact) else None
    engine = EngineRecord.from_dict(table) if isinstance(table, dict) else None
    arch = _resolve_arch(options, meta)
    cfg = meta.input if meta else get_config(arch).input
    images = _images(options)
    model = options.model if options.model is not None else _eager_model(options, arch, meta)
    num_classes = model.config.num_classes
    mapping = class_mapping(images, num_classes, options.class_index) if images is not None else (None, "")
    if proto is not None:
        check_fits(proto, num_classes=num_classes, size=cfg.size, what=arch)
    judgement = judgement_of(meta, engine)
    tolerances = judgement.tolerances.with_overrides(options.tolerances)
    if options.triton and not options.triton_model:
        options = replace(options, triton_model=arch)  # the ensemble <arch>
    with interrupts.stage("parity"):
        out = _run_both(options, model, cfg, images, progress)
    metrics = compare_logits(out.eager, out.artifact)
    flips = [Flip(n, int(x), int(y)) for n, x, y in zip(out.names, out.eager.argmax(1), out.artifact.argmax(1))
             if x != y]
    total = len(images.files) if images is not None else (options.samples or DEFAULT_SAMPLES)
    described = (f"{total} images from {options.data}" if images is not None
                 else f"{total} seeded synthetic images (seed {options.seed})")
    result = ParityResult(
        artifact=str(options.artifact), arch=arch, precision=meta.precision if meta else "fp32", runner=out.runner,
        weights=model.weights_info.description, inputs=described, metrics=metrics, tolerances=tolerances,
        verdicts=judge(metrics, tolerances), flips=flips, skipped=out.skipped, judgement=judgement,
    )
    if options.tolerances:
        result.notes.append(f"limits overridden by --tol: {', '.join(sorted(options.tolerances))}")
    note = target_note(meta, out.runner)
    if note:
        result.notes.append(note)
    if images is not None:
        result.accuracy = _accuracy(mapping, out.labels, out.eager, out.artifact, result)
    result.budget = budget_summary(meta)
    if options.localize:
        _localize(result, proto, model, cfg, out.first_batch)
    return result


def budget_summary(meta: ArtifactMeta | None) -> dict[str, object] | None:
    """What ``quantize --max-accuracy-drop``/``--min-agreement`` measured for this artifact (from its metadata):
    the goal, the data, FP32/plain/chosen scores and each block kept float with its costs; None without a budget."""
    record = budget_record(meta.extra if meta else None)
    if record is None:
        return None
    try:
        latency = record.get("latency") or {}
        return {
            "goal": record["goal"]["description"], "kind": record["goal"]["kind"], "met": bool(record["met"]),
            "images": record["data"]["images"], "data_sha256": record["data"]["sha256"],
            "fp32": record["fp32"]["score"], "plain_int8": record["plain_int8"]["score"],
            "int8": record["int8"]["score"], "drop_standard_error": record["int8"].get("drop_standard_error"),
            "kept_float": [{"block": k["block"], "points_lost_alone": k.get("points_lost_alone"),
                            "latency_cost_ms": k.get("latency_cost_ms")} for k in record["kept_float"]],
            "speedup_vs_fp32": latency.get("speedup_vs_fp32"), "scored_on": record.get("scored_on"),
        }
    except (KeyError, TypeError) as exc:
        return {"error": f"damaged accuracy-budget record ({type(exc).__name__}: {exc})"}


def _resolve_arch(options: ParityOptions, meta: ArtifactMeta | None) -> str:
    if options.arch and meta and options.arch != meta.arch:
        raise ConfigError(f"--arch {options.arch} does not match the artifact, which was exported from {meta.arch}")
    arch = options.arch or (meta.arch if meta else None)
    if arch is None:
        raise ConfigError(f"{options.artifact} has no resnest-deploy metadata; pass --arch")
    get_config(arch)
    return arch


def _eager_model(options: ParityOptions, arch: str, meta: ArtifactMeta | None) -> torch.nn.Module:
    wanted = meta.weights_sha256 if meta else None
    if wanted and options.weights is None:
        raise ConfigError(f"{options.artifact.name} was exported from a checkpoint (sha256 {wanted[:16]}…); "
                          "pass the same file with --weights")
    if wanted and options.weights is not None and file_sha256(options.weights) != wanted:
        raise WeightsMismatchError(f"{options.weights} is not the checkpoint {options.artifact.name} was exported "
                                   f"from (sha256 {wanted[:16]}…)")
    seed = meta.seed if meta and meta.seed is not None else options.seed
    classes = meta.num_classes if meta else None
    return create_model(arch, weights=options.weights, num_classes=classes, seed=seed)


def _images(options: ParityOptions) -> ImageSet | None:
    """The image files to compare on (sampled with the seed when ``samples`` is smaller), or None (synthetic)."""
    if options.data is None:
        return None
    images = find_images(options.data)
    if options.samples and options.samples < len(images.files):
        chosen = np.random.default_rng(options.seed).choice(len(images.files), options.samples, replace=False)
        images = images.subset(sorted(chosen.tolist()))
    return images


def _batches(options: ParityOptions, cfg: InputConfig, images: ImageSet | None,
             skipped: list[tuple[str, str]]) -> Iterator[tuple[np.ndarray, list[str], list]]:
    """Input batches with their names and labels; unreadable files go to ``skipped``."""
    if images is None:
        total = options.samples or DEFAULT_SAMPLES
        generator = torch.Generator().manual_seed(options.seed + 1)
        for start in range(0, total, options.batch):
            n = min(options.batch, total - start)
            yield synthetic_images(n, cfg.size, generator).numpy(), [f"synthetic[{start + i}]" for i in range(n)], \
                [None] * n
        return
    for loaded in iter_batches(images, cfg, options.batch):
        skipped.extend((str(p), r) for p, r in loaded.skipped)
        if len(loaded.files):
            yield loaded.array, [str(p) for p in loaded.files], loaded.labels


def _run_both(options: ParityOptions, model: torch.nn.Module, cfg: InputConfig, images: ImageSet | None,
              progress: ProgressFn | None) -> _Outputs:
    """Run eager and the artifact on the same batches."""
    total = len(images.files) if images is not None else (options.samples or DEFAULT_SAMPLES)
    skipped: list[tuple[str, str]] = []
    eager_logits, art_logits, names, labels = [], [], [], []
    first_batch: np.ndarray | None = None
    with TorchRunner(model, size=cfg.size) as eager, _artifact_runner(options) as artifact:
        spec = artifact.input_specs[0]
        fixed = spec.shape[0] if isinstance(spec.shape[0], int) else None
        for x, batch_names, batch_labels in _batches(options, cfg, images, skipped):
            interrupts.check()
            if first_batch is None:
                first_batch = x[:4] if fixed is None else fit_batch(x, fixed)
            eager_logits.append(eager.infer({"input": x})["logits"])
            if options.triton:  # the served model gets the files' bytes and preprocesses them itself
                files = np.array([[Path(n).read_bytes()] for n in batch_names], dtype=object)
                art_logits.append(artifact.infer({"image": files})["logits"])
            else:
                art_logits.append(run_batched(
                    lambda a: next(iter(artifact.infer({spec.name: a}).values())).astype(np.float32), x, fixed=fixed))
            names += batch_names
            labels += batch_labels
            if progress:
                progress("parity", len(names) + len(skipped), total)
        runner = artifact.name
    if not names:
        example = f", e.g. {skipped[0][1]}" if skipped else ""
        raise ConfigError(f"no readable images in {options.data} ({len(skipped)} skipped{example})")
    return _Outputs(np.concatenate(eager_logits), np.concatenate(art_logits), names, labels, skipped, runner,
                    first_batch)


def _artifact_runner(options: ParityOptions):
    """The artifact's runner, or the model served by Triton at ``--triton`` (default: the ensemble named after
    the artifact's arch)."""
    if options.triton:
        from ..runners.triton_runner import TritonRunner

        return TritonRunner(options.triton, options.triton_model or "")
    return open_artifact_runner(options.artifact, provider=options.provider)


def _localize(result: ParityResult, proto, model: torch.nn.Module, cfg: InputConfig,
              first_batch: np.ndarray | None) -> None:
    if result.passed:
        result.notes.append("parity passed; nothing to localize")
    elif proto is None:
        result.notes.append("--localize works on ONNX files; run it on the ONNX this engine was built from")
    else:
        result.localization = localize(TorchRunner(model, size=cfg.size), proto, first_batch,
                                       tolerance=STAGE_TOLERANCE[result.precision])


def _accuracy(mapping: tuple[dict[str, int] | None, str], labels: list, eager: np.ndarray, artifact: np.ndarray,
              result: ParityResult) -> dict[str, object] | None:
    index, how = mapping
    if index is None:
        result.notes.append(f"accuracy not reported: {how}")
        return None
    target = np.array([index[label] for label in labels])

    def topk(logits: np.ndarray) -> tuple[float, float]:
        order = np.argsort(-logits, axis=1)[:, :5]
        return float((order[:, 0] == target).mean()), float((order == target[:, None]).any(axis=1).mean())

    e1, e5 = topk(eager)
    a1, a5 = topk(artifact)
    return {"mapping": how, "samples": len(target), "eager_top1": e1, "eager_top5": e5, "artifact_top1": a1,
            "artifact_top5": a5, "top1_change": a1 - e1, "top5_change": a5 - e5}
