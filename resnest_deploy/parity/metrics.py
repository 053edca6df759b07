"""Output-parity metrics of an artifact's logits against the eager model's, and tolerance presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from ..errors import ConfigError


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class ParityMetrics:
    """How far an artifact's logits are from the eager model's over a set of samples.

    Attributes:
        samples: Number of samples compared.
        max_abs: Largest absolute difference of any logit.
        max_abs_rel: ``max_abs / max(1, max |eager logit|)``, the export tolerance's measure.
        mean_abs: Mean absolute difference.
        max_rel: Largest ``|a - e| / max(|e|, 1e-3)``.
        cosine_min: Smallest per-sample cosine similarity of the logit vectors.
        cosine_mean: Mean per-sample cosine similarity.
        top1_agreement: Fraction of samples whose top-1 class is the same.
        top5_overlap: Mean fraction of shared classes in the two top-5 sets.
        kl_mean: Mean KL(softmax(eager) || softmax(artifact)), in nats.
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


def compare_logits(eager: np.ndarray, artifact: np.ndarray) -> ParityMetrics:
    """Compute :class:`ParityMetrics` for two [N, classes] arrays."""
    e = eager.astype(np.float64)
    a = artifact.astype(np.float64)
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
        samples=int(e.shape[0]), max_abs=float(diff.max()), max_abs_rel=float(diff.max() / max(1.0, np.abs(e).max())),
        mean_abs=float(diff.mean()), max_rel=float((diff / np.maximum(np.abs(e), 1e-3)).max()),
        cosine_min=float(cosine.min()), cosine_mean=float(cosine.mean()),
        top1_agreement=float((top_e[:, 0] == top_a[:, 0]).mean()), top5_overlap=float(overlap.mean()),
        kl_mean=float(kl.mean()), kl_max=float(kl.max()),
    )


@dataclass(frozen=True)
class Tolerances:
    """Pass limits per metric; ``None`` means the metric is reported but not judged.

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
            ConfigError: An unknown metric name.
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown tolerance {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


_UPPER = {"max_abs_rel", "kl_mean"}

# By the artifact's precision. FP32 is the export tolerance; FP16 and INT8 allow their rounding but still demand
# that the classifier's decisions barely move. FP16/INT8 limits are the issue-5 acceptance levels, checked on the
# trained test model (docs/parity.md, docs/quantization.md).
PRESETS: dict[str, Tolerances] = {
    "fp32": Tolerances(max_abs_rel=1e-4, cosine_min=0.99999, top1_agreement=1.0, top5_overlap=0.99, kl_mean=1e-6),
    "fp16": Tolerances(max_abs_rel=2e-2, cosine_min=0.999, cosine_mean=0.9995, top1_agreement=0.995,
                       kl_mean=1e-3),
    "int8": Tolerances(cosine_min=0.95, cosine_mean=0.99, top1_agreement=0.97, kl_mean=5e-2),
}


@dataclass(frozen=True)
class Verdict:
    """One metric against its limit."""

    metric: str
    value: float
    limit: float | None
    passed: bool

    @property
    def name(self) -> str:
        return self.metric

    @property
    def detail(self) -> str:
        if self.limit is None:
            return f"{self.value:.6g} (not judged)"
        return f"{self.value:.6g} {'<=' if self.metric in _UPPER else '>='} {self.limit:.6g}"


def judge(metrics: ParityMetrics, tolerances: Tolerances) -> list[Verdict]:
    """A verdict for every judged metric (every failure is collected, not just the first)."""
    verdicts = []
    for name, limit in tolerances.to_dict().items():
        value = getattr(metrics, name)
        if limit is None:
            continue
        ok = value <= limit if name in _UPPER else value >= limit
        verdicts.append(Verdict(name, value, limit, bool(ok and np.isfinite(value))))
    return verdicts
