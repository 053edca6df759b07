"""How far one set of logits is from another: the one definition of every parity metric (numpy only).

Used by ``parity`` (artifact vs eager), by ``quantize`` (FP16/INT8 graph vs the FP32 graph) and by the export's
verification, so that a metric name stored in any manifest or report always means the same thing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def max_abs_rel(reference: np.ndarray, candidate: np.ndarray) -> float:
    """``max|candidate - reference| / max(1, max|reference|)``: absolute for small logits, relative for large.

    The floor at 1 keeps near-zero logits (random-init models, tiny heads) from turning rounding noise into huge
    relative errors; inf when the shapes differ or anything is not finite.
    """
    if reference.shape != candidate.shape:
        return float("inf")
    ref = reference.astype(np.float64)
    diff = np.abs(candidate.astype(np.float64) - ref)
    value = float(diff.max()) / max(1.0, float(np.abs(ref).max())) if diff.size else 0.0
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
