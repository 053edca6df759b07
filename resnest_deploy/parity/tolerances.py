"""Pass limits of parity, and the judgement an artifact gets from what it really computes.

The preset follows from the artifact itself, never from a ``--tol`` written by one caller: its precision (FP32,
FP16, INT8), whether a TensorRT engine was built with TF32 allowed (FP32 layers then run with a 10-bit mantissa),
and its provenance (a random-init model has nearly tied logits, so top-1 agreement says nothing about an INT8
version of it). ``--tol METRIC=VALUE`` still overrides any limit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from resnest_deploy.calibration.budget import budget_record

from ..kinds import Precision
from ..metrics import Tolerances


# FP32 is the export tolerance; FP16 and INT8 allow their rounding but still demand that the classifier's
# decisions barely move (levels checked on the trained test model: docs/parity.md, docs/quantization.md).
# TF32 (an FP32 engine built with TF32 allowed, or eager CUDA with cuDNN's default) rounds conv inputs to a
# 10-bit mantissa: emulated on resnest50 it gives max_abs_rel 1.1e-3, measured on an H200 1.4e-3 with cosine
# 0.999999 and top-1 100%, like FP16 (docs/parity.md). Random-init INT8 is judged by cosine and KL only.
PRESETS: dict[str, Tolerances] = {
    "fp32": Tolerances(max_abs_rel=1e-4, cosine_min=0.99999, top1_agreement=1.0, top5_overlap=0.99, kl_mean=1e-6),
    "tf32": Tolerances(max_abs_rel=5e-3, cosine_min=0.9999, cosine_mean=0.99995, top1_agreement=0.995,
                       kl_mean=1e-4),
    "fp16": Tolerances(max_abs_rel=2e-2, cosine_min=0.999, cosine_mean=0.9995, top1_agreement=0.995,
                       kl_mean=1e-3),
    "int8": Tolerances(cosine_min=0.95, cosine_mean=0.99, top1_agreement=0.97, kl_mean=5e-2),
}
# A random-init model's logits are near ties: any rounding (TF32, FP16, INT8) flips some top-1 classes without the
# artifact being wrong, so its reduced-precision artifacts keep every limit but top-1 agreement.
for _name in ("tf32", "fp16", "int8"):
    PRESETS[f"{_name}-random-init"] = replace(PRESETS[_name], top1_agreement=None)
# An INT8 graph made to an accuracy budget (quantize --max-accuracy-drop/--min-agreement) traded output error for
# speed on purpose, block by block, and was measured on the task metric: parity judges the decisions it promised.
PRESETS["int8-budget"] = Tolerances(top1_agreement=PRESETS["int8"].top1_agreement)


@dataclass(frozen=True)
class Judgement:
    """Which preset judges an artifact, and why (said in every report)."""

    preset: str
    reason: str

    @property
    def tolerances(self) -> Tolerances:
        return PRESETS[self.preset]


def judgement_for(precision: str, *, random_init: bool, tf32: bool = False) -> Judgement:
    """The preset for an artifact's precision, TF32 use and provenance.

    Args:
        precision: ``fp32``, ``fp16`` or ``int8``.
        random_init: The model had no checkpoint (random init with BatchNorm re-estimated).
        tf32: A TensorRT engine built with TF32 allowed for its FP32 layers.
    """
    precision = Precision.parse(precision, "precision").value
    name, why = precision, f"{precision} artifact"
    if precision == Precision.fp32 and tf32:
        name, why = "tf32", "FP32 engine built with TF32 allowed: convolutions round inputs to a 10-bit mantissa"
    if random_init and name != Precision.fp32:
        preset = f"{name}-random-init"
        judged = ", ".join(k for k, v in PRESETS[preset].to_dict().items() if v is not None)
        return Judgement(preset, f"{why} of a random-init model: its logits are near ties, so it is judged by "
                                 f"{judged}, not top-1 agreement")
    return Judgement(name, why)


def judgement_of(meta: Any, engine: Any = None) -> Judgement:
    """The judgement of an artifact from its metadata (and its :class:`EngineRecord`, if it is an engine)."""
    if meta is None:
        return judgement_for("fp32", random_init=False)
    random_init = meta.weights_sha256 is None and meta.seed is not None
    tf32 = bool(engine is not None and engine.tf32) and meta.precision == Precision.fp32
    budget = budget_record(meta.extra)
    if meta.precision == Precision.int8 and not random_init and budget is not None and budget.get("met"):
        goal = (budget.get("goal") or {}).get("description", "an accuracy budget")
        return Judgement("int8-budget", f"int8 artifact made to an accuracy budget ({goal}): judged by top-1 "
                                        "agreement; its output-error metrics are what the budget traded, reported "
                                        "but not judged")
    return judgement_for(meta.precision, random_init=random_init, tf32=tf32)
