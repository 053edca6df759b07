"""Parity of an artifact against the eager model it came from, on seeded inputs or a folder of images."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from calibration.images import ImageSet, find_images, iter_batches
from exporters.graph import check_fits, load_artifact
from exporters.metadata import ArtifactMeta
from exporters.verify import fit_batch, run_batched

from ..errors import ConfigError, WeightsMismatchError
from ..models import InputConfig, create_model, get_config
from ..models.batchnorm import synthetic_images
from ..models.weights import file_sha256
from ..runners.factory import open_artifact_runner
from ..runners.torch_runner import TorchRunner
from .localize import Localization, localize
from .metrics import PRESETS, ParityMetrics, Tolerances, Verdict, compare_logits, judge

# Per-stage relative error over which --localize calls a stage diverged, by precision.
STAGE_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.15}
_WNID = re.compile(r"^n\d{8}$")
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ParityOptions:
    """What to compare. See ``resnest-deploy parity --help``.

    ``model`` lets Python callers pass the eager network (from :func:`resnest_deploy.models.create_model`) instead
    of having it rebuilt from the artifact's metadata; it must be the network the artifact was exported from.
    """

    artifact: Path
    arch: str | None = None
    weights: Path | None = None
    data: Path | None = None
    samples: int | None = None
    batch: int = 8
    seed: int = 0
    tolerances: dict[str, float] = field(default_factory=dict)
    localize: bool = False
    class_index: Path | None = None
    provider: str = "auto"
    model: torch.nn.Module | None = field(default=None, compare=False, repr=False)


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
    verdicts: list[Verdict]
    flips: list[Flip]
    skipped: list[tuple[str, str]]
    accuracy: dict[str, object] | None = None
    localization: Localization | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def to_dict(self) -> dict[str, object]:
        return {
            "schema": "resnest-deploy/parity/1", "artifact": self.artifact, "arch": self.arch,
            "precision": self.precision, "runner": self.runner, "weights": self.weights, "inputs": self.inputs,
            "passed": self.passed, "metrics": self.metrics.to_dict(), "tolerances": self.tolerances.to_dict(),
            "verdicts": [{"metric": v.metric, "value": v.value, "limit": v.limit, "passed": v.passed}
                         for v in self.verdicts],
            "flips": [f.__dict__ for f in self.flips], "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "accuracy": self.accuracy, "localization": self.localization.to_dict() if self.localization else None,
            "notes": self.notes,
        }


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


def _class_mapping(images: ImageSet, num_classes: int, index_file: Path | None) -> tuple[dict[str, int] | None, str]:
    """Folder name -> class index, and how it was decided (or why accuracy is not reported)."""
    if index_file is not None:
        text = index_file.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
            mapping = {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else \
                {str(name): i for i, name in enumerate(data)}
        except json.JSONDecodeError:
            mapping = {line.split()[0]: i for i, line in enumerate(text.splitlines()) if line.strip()}
        missing = sorted(set(images.classes) - set(mapping))
        if missing:
            raise ConfigError(f"{index_file} has no index for folders {missing[:5]}")
        return mapping, f"class index file {index_file.name}"
    if not images.is_class_tree:
        return None, "not a class-per-subfolder tree"
    if len(images.classes) == num_classes:
        kind = "ImageNet synset order" if all(_WNID.match(c) for c in images.classes) else "sorted folder names"
        return {c: i for i, c in enumerate(images.classes)}, kind
    return None, (f"{len(images.classes)} class folders for a {num_classes}-class model; pass --class-index to map "
                  "them")


def _batches(options: ParityOptions, cfg: InputConfig) -> tuple[Iterator[tuple[np.ndarray, list[str], list]], int,
                                                              str, ImageSet | None, list[tuple[str, str]]]:
    skipped: list[tuple[str, str]] = []
    if options.data is None:
        total = options.samples or 64
        generator = torch.Generator().manual_seed(options.seed + 1)

        def synthetic() -> Iterator[tuple[np.ndarray, list[str], list]]:
            for start in range(0, total, options.batch):
                n = min(options.batch, total - start)
                x = synthetic_images(n, cfg.size, generator).numpy()
                yield x, [f"synthetic[{start + i}]" for i in range(n)], [None] * n

        return synthetic(), total, f"{total} seeded synthetic images (seed {options.seed})", None, skipped
    images = find_images(options.data)
    if options.samples and options.samples < len(images.files):
        chosen = np.random.default_rng(options.seed).choice(len(images.files), options.samples, replace=False)
        images = images.subset(sorted(chosen.tolist()))

    def real() -> Iterator[tuple[np.ndarray, list[str], list]]:
        for loaded in iter_batches(images, cfg, options.batch):
            skipped.extend((str(p), r) for p, r in loaded.skipped)
            if len(loaded.files):
                yield loaded.array, [str(p) for p in loaded.files], loaded.labels

    return real(), len(images.files), f"{len(images.files)} images from {options.data}", images, skipped


def run_parity(options: ParityOptions, *, progress: ProgressFn | None = None) -> ParityResult:
    """Compare an artifact's outputs with the eager model's and judge them by the precision's tolerances.

    Args:
        options: What to compare.
        progress: Called with (samples done, samples total) after each batch.

    Returns:
        The result; ``result.passed`` is False when any judged metric fails.

    Raises:
        ArtifactError: The artifact is missing or unreadable.
        ConfigError: Arch unknown or not matching the artifact; empty or unreadable image folder; bad options.
        WeightsMismatchError: ``--weights`` is not the checkpoint the artifact came from.
    """
    if options.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {options.batch}")
    if options.samples is not None and options.samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {options.samples}")
    proto, meta = load_artifact(options.artifact)
    arch = _resolve_arch(options, meta)
    cfg = meta.input if meta else get_config(arch).input
    model = options.model if options.model is not None else _eager_model(options, arch, meta)
    if proto is not None:
        check_fits(proto, num_classes=model.config.num_classes, size=cfg.size, what=arch)
    precision = meta.precision if meta else "fp32"
    tolerances = PRESETS[precision].with_overrides(options.tolerances)
    batches, total, described, images, skipped = _batches(options, cfg)
    eager_logits, art_logits, names, labels = [], [], [], []
    first_batch: np.ndarray | None = None
    eager = TorchRunner(model, size=cfg.size)
    with eager, open_artifact_runner(options.artifact, provider=options.provider) as artifact:
        spec = artifact.input_specs[0]
        fixed = spec.shape[0] if isinstance(spec.shape[0], int) else None
        for x, batch_names, batch_labels in batches:
            if first_batch is None:
                first_batch = x[:4] if fixed is None else fit_batch(x, fixed)
            eager_logits.append(eager.infer({"input": x})["logits"])
            art_logits.append(_run_in_chunks(artifact, spec.name, x, fixed))
            names += batch_names
            labels += batch_labels
            if progress:
                progress(len(names) + len(skipped), total)
        runner_name = artifact.name
    if not names:
        raise ConfigError(f"no readable images in {options.data} ({len(skipped)} skipped, e.g. {skipped[0][1]})")
    e, a = np.concatenate(eager_logits), np.concatenate(art_logits)
    metrics = compare_logits(e, a)
    top_e, top_a = e.argmax(1), a.argmax(1)
    flips = [Flip(n, int(x), int(y)) for n, x, y in zip(names, top_e, top_a) if x != y]
    result = ParityResult(
        artifact=str(options.artifact), arch=arch, precision=precision, runner=runner_name,
        weights=model.weights_info.description, inputs=described, metrics=metrics, tolerances=tolerances,
        verdicts=judge(metrics, tolerances), flips=flips, skipped=skipped,
    )
    if images is not None:
        result.accuracy = _accuracy(images, labels, e, a, model.config.num_classes, options.class_index, result)
    if options.localize:
        if result.passed:
            result.notes.append("parity passed; nothing to localize")
        elif proto is None:
            result.notes.append("--localize works on ONNX files; run it on the ONNX this engine was built from")
        else:
            result.localization = localize(eager, proto, first_batch, tolerance=STAGE_TOLERANCE[precision])
    return result


def _run_in_chunks(runner, name: str, x: np.ndarray, fixed: int | None) -> np.ndarray:
    """Run ``x`` through ``runner``; an artifact with a fixed batch gets padded chunks of that size."""
    return run_batched(lambda a: next(iter(runner.infer({name: a}).values())).astype(np.float32), x, fixed=fixed)


def _accuracy(images: ImageSet, labels: list, eager: np.ndarray, artifact: np.ndarray, num_classes: int,
              index_file: Path | None, result: ParityResult) -> dict[str, object] | None:
    mapping, how = _class_mapping(images, num_classes, index_file)
    if mapping is None:
        result.notes.append(f"accuracy not reported: {how}")
        return None
    target = np.array([mapping[label] for label in labels])

    def topk(logits: np.ndarray) -> tuple[float, float]:
        order = np.argsort(-logits, axis=1)[:, :5]
        return float((order[:, 0] == target).mean()), float((order == target[:, None]).any(axis=1).mean())

    e1, e5 = topk(eager)
    a1, a5 = topk(artifact)
    return {"mapping": how, "samples": len(target), "eager_top1": e1, "eager_top5": e5, "artifact_top1": a1,
            "artifact_top5": a5, "top1_change": a1 - e1, "top5_change": a5 - e5}
