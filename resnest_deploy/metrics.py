"""How far one set of outputs is from another, and the verdict against limits: the one definition of every
parity metric and of how a limit judges it (numpy only).

Every comparison of two models' outputs takes this path: the outputs (from runners, or ONNX Runtime sessions below
the runners' layer) -> :func:`compare_logits` -> :func:`judge` against :class:`Tolerances` -> :class:`Check`
records. ``parity`` (artifact vs eager), ``quantize`` (FP16/INT8 graph vs the FP32 graph), the export's verification
and ``--localize`` all use it, so a metric name stored in any manifest or report always means the same thing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from .checks import Check
from .errors import ConfigError


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


MAX_ABS_REL_FORMULA = "max |Δ| / max(1, max|logit|)"  # how reports write max_abs_rel out


def max_abs_rel(reference: np.ndarray, candidate: np.ndarray, floor: float = 1.0) -> float:
    """``max|candidate - reference| / max(floor, max|reference|)``: the one relative error of the tool.

    With the default floor of 1 it is absolute for small logits and relative for large ones, which keeps near-zero
    logits (random-init models, tiny heads) from turning rounding noise into huge relative errors; feature maps
    (``--localize``) use a small floor. inf when the shapes differ or anything is not finite.
    """
    if reference.shape != candidate.shape:
        return float("inf")
    ref = reference.astype(np.float64)
    diff = np.abs(candidate.astype(np.float64) - ref)
    value = float(diff.max()) / max(floor, float(np.abs(ref).max())) if diff.size else 0.0
    return value if np.isfinite(value) else float("inf")


@dataclass(frozen=True)
class ParityMetrics:
    """How far a candidate's logits are from a reference's over a set of samples.

    Attributes:
        samples: Number of samples compared.
        max_abs: Largest absolute difference of any logit.
        max_abs_rel: ``max_abs / max(1, max |reference logit|)`` (see :func:`max_abs_rel`).
        mean_abs: Mean absolute difference.
        max_rel: Largest ``|a - e| / max(|e|, 1e-3)``.
        cosine_min: Smallest per-sample cosine similarity of the logit vectors.
        cosine_mean: Mean per-sample cosine similarity.
        top1_agreement: Fraction of samples whose top-1 class is the same.
        top5_overlap: Mean fraction of shared classes in the two top-5 sets.
        kl_mean: Mean KL(softmax(reference) || softmax(candidate)), in nats.
        kl_max: Largest per-sample KL.
    """

    samples: int
    max_abs: float
    max_abs_rel: float
    mean_abs: float
    max_rel: float
    cosine_min: float
    cosine_mean: float
    top1_agreement: float
    top5_overlap: float
    kl_mean: float
    kl_max: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> ParityMetrics:
    """Compute :class:`ParityMetrics` for two [N, classes] arrays (reference first)."""
    e = reference.astype(np.float64)
    a = candidate.astype(np.float64)
    diff = np.abs(a - e)
    norms = np.linalg.norm(e, axis=1) * np.linalg.norm(a, axis=1)
    cosine = np.where(norms > 0, (e * a).sum(axis=1) / np.maximum(norms, 1e-300), 1.0)
    k = min(5, e.shape[1])
    top_e = np.argsort(-e, axis=1)[:, :k]
    top_a = np.argsort(-a, axis=1)[:, :k]
    overlap = np.array([len(set(x) & set(y)) / k for x, y in zip(top_e, top_a)])
    p, q = _softmax(e), _softmax(a)
    kl = (p * (np.log(np.maximum(p, 1e-300)) - np.log(np.maximum(q, 1e-300)))).sum(axis=1)
    return ParityMetrics(
        samples=int(e.shape[0]), max_abs=float(diff.max()), max_abs_rel=max_abs_rel(e, a),
        mean_abs=float(diff.mean()), max_rel=float((diff / np.maximum(np.abs(e), 1e-3)).max()),
        cosine_min=float(cosine.min()), cosine_mean=float(cosine.mean()),
        top1_agreement=float((top_e[:, 0] == top_a[:, 0]).mean()), top5_overlap=float(overlap.mean()),
        kl_mean=float(kl.mean()), kl_max=float(kl.max()),
    )


@dataclass(frozen=True)
class Tolerances:
    """Pass limits per metric of :class:`ParityMetrics`; ``None`` means the metric is reported but not judged.

    Upper limits: ``max_abs_rel``, ``kl_mean``. Lower limits: ``cosine_min``, ``cosine_mean``,
    ``top1_agreement``, ``top5_overlap``.
    """

    max_abs_rel: float | None = None
    cosine_min: float | None = None
    cosine_mean: float | None = None
    top1_agreement: float | None = None
    top5_overlap: float | None = None
    kl_mean: float | None = None

    def with_overrides(self, overrides: dict[str, float]) -> Tolerances:
        """Replace limits by name.

        Raises:
            ConfigError: An unknown metric name, or a limit that is not a finite number in the metric's range.
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown tolerance {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for name, value in overrides.items():
            check_limit(name, value)
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


UPPER = frozenset({"max_abs_rel", "kl_mean"})
# The values each metric can take: a limit outside them judges nothing.
RANGES = {"max_abs_rel": (0.0, math.inf), "kl_mean": (0.0, math.inf), "cosine_min": (-1.0, 1.0),
          "cosine_mean": (-1.0, 1.0), "top1_agreement": (0.0, 1.0), "top5_overlap": (0.0, 1.0)}


def check_limit(name: str, value: object) -> None:
    """Refuse a limit that is not a finite number inside the range its metric takes.

    Raises:
        ConfigError: Naming the metric, the value and the range.
    """
    low, high = RANGES[name]
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or not low <= number <= high:
        shown = f"{low:g}..{high:g}" if math.isfinite(high) else f">= {low:g}"
        raise ConfigError(f"--tol {name}={value!r} is not a finite limit in {shown}")


def judge(metrics: ParityMetrics, tolerances: Tolerances) -> list[Check]:
    """A check for every judged metric (every failure is collected, not just the first); a non-finite value
    fails whatever the limit."""
    verdicts = []
    for name, limit in tolerances.to_dict().items():
        if limit is None:
            continue
        value = getattr(metrics, name)
        ok = value <= limit if name in UPPER else value >= limit
        detail = f"{value:.6g} {'<=' if name in UPPER else '>='} {limit:.6g}"
        verdicts.append(Check(name, bool(ok and np.isfinite(value)), detail, value=value, limit=limit))
    return verdicts
