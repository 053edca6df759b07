"""The accuracy data of ``quantize --max-accuracy-drop`` / ``--min-agreement``: images, labels, and the score.

Labelled data is a class-per-subfolder tree mapped to the model's classes by the same rules as parity's
``--data``/``--class-index`` (:func:`~resnest_deploy.calibration.class_index.class_mapping`); agreement needs no
labels (any folder or list of images). Images are read with the architecture's eval preprocessing, unreadable
ones skipped and counted. The data's hash is taken over each file's path (relative), label and bytes, so a
changed, added or relabelled image changes it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnest_deploy.errors import ConfigError
from resnest_deploy.metrics import compare_logits
from resnest_deploy.models import InputConfig
from resnest_deploy.progress import ProgressFn

from .budget import ACCURACY, AGREEMENT, images_needed
from .class_index import class_mapping
from .images import find_images, iter_batches


@dataclass
class AccuracyData:
    """Preprocessed accuracy images and (for ``accuracy``) their class indices.

    Attributes:
        array: [N, 3, H, W] float32.
        labels: [N] class indices, or None (agreement).
        source: The folder given.
        mapping: How folders map to classes (or why there are no labels).
        sha256: Hash of the files' relative paths, labels and bytes.
        skipped: Files that could not be read, with the reason.
    """

    array: np.ndarray
    labels: np.ndarray | None
    source: str
    mapping: str
    sha256: str
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"source": self.source, "images": int(len(self.array)), "labelled": self.labels is not None,
                "mapping": self.mapping, "sha256": self.sha256, "skipped": len(self.skipped)}


def data_sha256(root: Path, files: tuple[Path, ...], labels: list[int | None]) -> str:
    """Hash of each file's path relative to ``root``, its label and its bytes (see the module docstring)."""
    digest = hashlib.sha256()
    for path, label in zip(files, labels):
        digest.update(f"{os.path.relpath(path, root)}\0{label}\0".encode("utf-8", "surrogateescape"))
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError as exc:
            digest.update(f"unreadable:{type(exc).__name__}".encode())
    return digest.hexdigest()


def load_accuracy_data(source: str | os.PathLike[str], cfg: InputConfig, *, kind: str, limit: float,
                       num_classes: int, class_index: Path | None = None,
                       progress: ProgressFn | None = None) -> AccuracyData:
    """Read the accuracy images (and labels for ``accuracy``), and refuse data that cannot resolve the budget.

    Raises:
        ConfigError: Not a folder of images; no labels for ``accuracy`` (not a class tree, folders that do not
            map); fewer readable images than the budget needs (the number needed is named).
    """
    images = find_images(source)
    mapping: dict[str, int] | None = None
    how = "unlabelled (agreement with FP32)"
    if kind == ACCURACY:
        mapping, how = class_mapping(images, num_classes, class_index)
        if mapping is None:
            raise ConfigError(f"--accuracy-data {source}: no labels for --max-accuracy-drop ({how}); give a "
                              "class-per-subfolder tree (with --class-index when folders are not the model's "
                              "classes in sorted order), or use --min-agreement with unlabelled images")
    need = images_needed(kind, limit)
    if len(images.files) < need:
        raise ConfigError(_too_few(source, len(images.files), need, kind, limit))
    arrays, labels, files, skipped = [], [], [], []
    done = 0
    for batch in iter_batches(images, cfg, 32):
        skipped += [(str(p), reason) for p, reason in batch.skipped]
        if len(batch.files):
            arrays.append(batch.array)
            files += batch.files
            labels += [mapping[label] if mapping is not None and label is not None else None for label in batch.labels]
        done += len(batch.files) + len(batch.skipped)
        if progress:
            progress("accuracy data", done, len(images.files))
    if len(files) < need:
        raise ConfigError(_too_few(source, len(files), need, kind, limit, len(skipped)))
    sha = data_sha256(images.root, tuple(files), labels)
    array = np.concatenate(arrays)
    y = np.asarray(labels, dtype=np.int64) if kind == ACCURACY else None
    return AccuracyData(array, y, str(source), how, sha, skipped)


def _too_few(source: object, have: int, need: int, kind: str, limit: float, skipped: int = 0) -> str:
    what = f"a {limit:g}-point drop" if kind == ACCURACY else f"{limit:g} agreement"
    found = f"{have} readable images ({skipped} unreadable)" if skipped else f"{have} images"
    return (f"--accuracy-data {source}: {found} cannot resolve {what}: one image is "
            f"{100 / max(have, 1):.3g} points; at least {need} images are needed")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class Scorer:
    """Scores logits on the accuracy data: top-1 accuracy (or agreement with FP32) in percent, and the loss."""

    kind: str
    reference: np.ndarray  # FP32 logits
    labels: np.ndarray | None

    def score(self, logits: np.ndarray) -> tuple[float, float]:
        """(score in percent, loss): accuracy and cross-entropy against the labels; or agreement with FP32's
        top-1 and the mean KL divergence from FP32's probabilities."""
        if self.kind == ACCURACY:
            assert self.labels is not None
            correct = float(np.mean(logits.argmax(1) == self.labels)) * 100.0
            loss = float(-np.mean(log_softmax(logits)[np.arange(len(self.labels)), self.labels]))
            return correct, loss
        agreement = compare_logits(self.reference, logits)  # the tool's one top-1 agreement and KL divergence
        return agreement.top1_agreement * 100.0, agreement.kl_mean


def standard_error(kind: str, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None) -> float:
    """Standard error, in points, of the measured drop (accuracy: paired, from the images one graph gets right
    and the other wrong; agreement: binomial on the disagreeing share)."""
    n = len(candidate)
    if n == 0:
        return float("nan")
    if kind == AGREEMENT:
        p = float(np.mean(candidate.argmax(1) == reference.argmax(1)))
        return 100.0 * float(np.sqrt(p * (1 - p) / n))
    assert labels is not None
    d = (reference.argmax(1) == labels).astype(float) - (candidate.argmax(1) == labels).astype(float)
    return 100.0 * float(np.std(d, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
