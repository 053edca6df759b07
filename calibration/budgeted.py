"""Running the accuracy-budget search on real graphs: score each mix on the accuracy data with ONNX Runtime, and
time what the kept blocks cost on the CPU.

Both targets are scored on ONNX Runtime's CPU provider. For ``--runtime tensorrt`` that is a proxy: the Q/DQ
graph TensorRT will build, run by ONNX Runtime (same INT8 values and scales, float parts in ONNX Runtime's kernels
rather than TensorRT's), which the record says. For ``--runtime cpu`` it is the graph that will be served, and each
kept block's latency cost is measured too: the chosen graph against the same graph with that block quantized,
interleaved round by round with the FP32 and plain INT8 graphs (:mod:`resnest_deploy.timing`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from resnest_deploy import interrupts
from resnest_deploy.ort_session import ort_session, run_graph
from resnest_deploy.progress import ProgressFn
from resnest_deploy.timing import Contender, measure_interleaved

from .accuracy import AccuracyData, Scorer, standard_error
from .budget import ACCURACY, Goal, SearchResult, Trial, search

Build = Callable[[tuple[str, ...]], onnx.ModelProto]  # kept-float blocks -> INT8 graph
LATENCY_BATCH = 8
SENSITIVITY_IMAGES = 64  # step 2 only orders the blocks, with nearly float graphs: most of the time on resnest50
LATENCY_ROUNDS = 10
PROXY_NOTE = ("scored with ONNX Runtime (CPU) running the TensorRT Q/DQ graph as a proxy: the same INT8 values and "
              "scales, float parts in ONNX Runtime's kernels")


@dataclass
class BudgetOutcome:
    """The search's result, the graph it chose, and the record that goes into the metadata and manifest."""

    result: SearchResult
    model: onnx.ModelProto
    record: dict[str, Any]

    @property
    def met(self) -> bool:
        return self.result.met


def run_budget(reference: onnx.ModelProto, build: Build, blocks: Sequence[str], data: AccuracyData, *, kind: str,
               limit: float, target: str, max_trials: int, progress: ProgressFn | None = None) -> BudgetOutcome:
    """Search the fewest float blocks meeting the budget (:func:`~resnest_deploy.calibration.budget.search`) with
    ``build`` making each mix, scored on ``data`` against the FP32 ``reference`` graph.

    Raises:
        ConfigError: ``max_trials`` below 1, or no blocks to search over.
    """
    started = time.perf_counter()
    fp32 = run_graph(reference, data.array)
    scorer = Scorer(kind, fp32, data.labels)
    ref_score, ref_loss = scorer.score(fp32)
    goal = Goal(kind, limit, ref_score if kind == ACCURACY else 100.0, ref_loss if kind == ACCURACY else 0.0)
    built = _Recent(build)
    chosen: dict[frozenset[str], np.ndarray] = {}  # the last trial's logits: one array, however many trials

    def measure(kept: tuple[str, ...]) -> tuple[float, float]:
        interrupts.check()
        out = run_graph(built(kept), data.array)
        score, loss = scorer.score(out)
        chosen[frozenset(kept)] = out
        for key in [k for k in chosen if k != frozenset(kept)]:
            del chosen[key]
        return score, loss

    sample = _sample(len(data.array))
    sample_scorer = Scorer(kind, fp32[sample], None if data.labels is None else data.labels[sample])

    def rank_measure(kept: tuple[str, ...]) -> tuple[float, float]:
        interrupts.check()
        return sample_scorer.score(run_graph(built(kept), data.array[sample]))

    sampled = len(sample) < len(data.array)
    result = search(blocks, measure, goal, max_trials=max_trials, progress=progress,
                    rank_measure=rank_measure if sampled else None,
                    rank_reference=sample_scorer.score(fp32[sample]) if sampled else None)
    model = built(result.chosen.kept)
    chosen_logits = chosen.get(frozenset(result.chosen.kept))
    if chosen_logits is None:  # the chosen mix was measured before the last trial
        chosen_logits = run_graph(model, data.array)
    record = _record(result, goal, data, blocks, max_trials, target,
                     standard_error(kind, fp32, chosen_logits, data.labels))
    if target == "cpu" and result.met:  # what each kept block costs in time; an over-budget mix is not served
        record["latency"] = _latency(reference, built, result, data.array, measure, progress)
        for entry in record["kept_float"]:
            entry["latency_cost_ms"] = record["latency"]["cost_ms"].get(entry["block"])
    record["search_seconds"] = round(time.perf_counter() - started, 1)
    return BudgetOutcome(result, model, record)


def _record(result: SearchResult, goal: Goal, data: AccuracyData, blocks: Sequence[str], max_trials: int,
            target: str, drop_error: float) -> dict[str, Any]:
    """What the metadata, the manifest, parity and the report say about the search."""
    return {
        "goal": {"kind": goal.kind, "limit": goal.limit, "description": goal.describe()},
        "data": data.record(),
        "fp32": {"score": goal.reference, "loss": goal.reference_loss},
        "plain_int8": _scores(result.plain),
        "int8": {**_scores(result.chosen), "drop_standard_error": drop_error},
        "met": result.met, "stop": result.stop, "max_trials": max_trials, "trials_run": len(result.trials),
        "blocks": list(blocks),
        "kept_float": [_kept(result, block) for block in result.chosen.kept],
        "sensitivity": [c.to_dict() for c in result.costs],
        "sensitivity_images": min(len(data.array), SENSITIVITY_IMAGES),
        "trials": [t.to_dict() for t in result.trials],
        "scored_on": PROXY_NOTE if target == "tensorrt" else "ONNX Runtime (CPU), the graph served",
    }


class _Recent:
    """``build`` remembering the plain graph and the last few mixes (the chosen one and its neighbours are what the
    latency step needs again), so no mix is built twice in a row."""

    def __init__(self, build: Build, keep: int = 6) -> None:
        self.build, self.keep = build, keep
        self.models: OrderedDict[frozenset[str], onnx.ModelProto] = OrderedDict()

    def __call__(self, kept: tuple[str, ...]) -> onnx.ModelProto:
        key = frozenset(kept)
        if key not in self.models:
            self.models[key] = self.build(kept)
            while len(self.models) > self.keep + 1:
                oldest = next(k for k in self.models if k)  # the plain graph (empty key) stays
                del self.models[oldest]
        self.models.move_to_end(key)
        return self.models[key]


def _scores(trial: Trial) -> dict[str, Any]:
    return {"score": trial.score, "loss": trial.loss, "kept_float": list(trial.kept)}


def _kept(result: SearchResult, block: str) -> dict[str, Any]:
    cost = result.cost_of(block)
    return {"block": block, **({"points_lost_alone": cost.drop, "loss_added_alone": cost.loss_added} if cost else {})}


def _sample(n: int) -> np.ndarray:
    """The images step 2 ranks blocks on: all of them up to :data:`SENSITIVITY_IMAGES`, else that many evenly
    spaced (class trees are sorted by class, so every class is in it)."""
    if n <= SENSITIVITY_IMAGES:
        return np.arange(n)
    return np.linspace(0, n - 1, SENSITIVITY_IMAGES).round().astype(int)


def _latency(reference: onnx.ModelProto, build: Build, result: SearchResult, x: np.ndarray,
             measure: Callable[[tuple[str, ...]], tuple[float, float]],
             progress: ProgressFn | None) -> dict[str, Any]:
    """FP32, plain INT8, the chosen mix and the chosen mix with each kept block quantized, timed interleaved on
    ``LATENCY_BATCH`` images; each kept block's cost is the chosen mix's median minus its variant's."""
    kept = result.chosen.kept
    variants: dict[str, tuple[onnx.ModelProto, tuple[str, ...] | None]] = {
        "fp32": (reference, None), "int8 plain": (build(()), ()), "int8 chosen": (build(kept), kept)}
    for block in kept:
        variants[f"int8 chosen, {block} quantized"] = (build(tuple(b for b in kept if b != block)),
                                                      tuple(b for b in kept if b != block))
    batch = x[:LATENCY_BATCH]
    contenders = []
    for name, (model, _) in variants.items():
        session = ort_session(model, spinning=False)
        feed = {session.get_inputs()[0].name: batch}
        contenders.append(Contender(name, lambda s=session, f=feed: s.run(None, f), batch=len(batch)))
    stats = {s.name: s for s in measure_interleaved(
        contenders, warmup=2, iters=LATENCY_ROUNDS,
        progress=(lambda phase, done, total: progress("latency", done, total)) if progress else None)}
    scores = {frozenset(t.kept): t.score for t in result.trials}
    rows = []
    for name, (_, mix) in variants.items():
        score = None if mix is None else scores.get(frozenset(mix))
        if mix is not None and score is None:
            score = measure(mix)[0]  # a variant the search did not need; scored for the trade-off plot
        rows.append({"name": name, "p50_ms": stats[name].p50, "kept_float": list(mix or ()), "score": score})
    chosen = stats["int8 chosen"].p50
    return {
        "batch": len(batch), "rounds": LATENCY_ROUNDS, "rows": rows,
        "speedup_vs_fp32": stats["fp32"].p50 / chosen if chosen > 0 else None,
        "plain_speedup_vs_fp32": stats["fp32"].p50 / stats["int8 plain"].p50 if stats["int8 plain"].p50 > 0 else None,
        "cost_ms": {block: chosen - stats[f"int8 chosen, {block} quantized"].p50 for block in kept},
    }

