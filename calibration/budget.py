"""The accuracy-budget search of ``quantize --max-accuracy-drop`` / ``--min-agreement``: which blocks to keep float.

This module is the search alone, over any ``measure`` function (the quantize step gives it one that builds the
INT8 graph with a set of blocks kept float and scores it on the accuracy data with ONNX Runtime):

1. measure plain INT8 (nothing kept float); if it meets the goal, stop: the result is the plain graph;
2. measure each block quantized alone (every other block float): its *cost* is the task loss it adds against FP32
   (cross-entropy against the labels, or KL divergence from FP32's probabilities), then the top-1 points it loses
   (accuracy, or agreement with FP32), then block order (see :func:`_rank`). Alone, in an otherwise float
   network, because the other way round (one block float in an INT8 network) a block that breaks the network masks
   every other: keeping any one of them float then changes nothing;
3. keep blocks float, most costly first, re-measuring the whole graph after each, until the goal is met;
4. give back: try to quantize again each kept block, cheapest first, keeping the change when the goal still holds.

Step 2 may run on a sample of the images (``rank_measure``): it only orders the blocks, and on a large model it
is most of the trials (nearly float graphs, the slowest to run). Its mixes are then never chosen; every mix steps
1, 3 and 4 measure is scored on all of them, so the chosen one is judged on the whole search data.

Every step counts one trial (a mix measured twice is measured once); ``max_trials`` bounds them. The search is
deterministic: the same measurements give the same result. When no mix meets the goal, the best one found (the
highest score, then the lowest loss, then the fewest float blocks) is returned with ``met`` False.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from resnest_deploy.errors import ConfigError
from resnest_deploy.progress import ProgressFn

ACCURACY = "accuracy"  # top-1 accuracy on labelled images, in percent; limit: points of drop from FP32
AGREEMENT = "agreement"  # top-1 agreement with FP32, in percent; limit: the least agreement, in percent
DEFAULT_MAX_TRIALS = 64
IMAGES_PER_STEP = 2  # the budget must span this many images: one image more or less never decides a search
Measure = Callable[[tuple[str, ...]], tuple[float, float]]  # kept-float blocks -> (score in percent, loss)


@dataclass(frozen=True)
class Goal:
    """What the INT8 graph must reach on the accuracy data.

    Attributes:
        kind: ``accuracy`` (labelled data) or ``agreement`` (any images; top-1 agreement with FP32).
        limit: ``accuracy``: the largest drop from FP32, in points; ``agreement``: the least agreement, percent.
        reference: FP32's score on the same data (accuracy in percent; 100 for agreement).
        reference_loss: FP32's loss on the same data (cross-entropy; 0 for agreement's KL divergence).
    """

    kind: str
    limit: float
    reference: float
    reference_loss: float = 0.0

    def floor(self) -> float:
        """The lowest score that meets the goal."""
        return self.reference - self.limit if self.kind == ACCURACY else self.limit

    def meets(self, score: float) -> bool:
        return score >= self.floor() - 1e-9

    def describe(self) -> str:
        if self.kind == ACCURACY:
            return f"top-1 within {self.limit:g} point{'' if self.limit == 1 else 's'} of FP32 ({self.reference:.2f}%)"
        return f"top-1 agreement with FP32 >= {self.limit:g}%"


def budget_record(extra: Any) -> dict[str, Any] | None:
    """The accuracy-budget record in an artifact's metadata ``extra`` (``quantization.accuracy_budget``), or None
    when it has none or it is not a table."""
    quantization = extra.get("quantization") if isinstance(extra, dict) else None
    record = quantization.get("accuracy_budget") if isinstance(quantization, dict) else None
    return record if isinstance(record, dict) else None


def check_limit(kind: str, limit: float) -> None:
    """Refuse a limit no measurement can meet or that means nothing (NaN, inf, 0, a negative or >100 budget).

    Raises:
        ConfigError: The limit, named as its option.
    """
    option = "--max-accuracy-drop" if kind == ACCURACY else "--min-agreement"
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit):
        raise ConfigError(f"{option} must be a finite number, got {limit!r}")
    if kind == ACCURACY and not 0 < limit <= 100:
        raise ConfigError(f"{option} is in top-1 points: more than 0 and at most 100, got {limit:g}")
    if kind == AGREEMENT and not 0 < limit < 1:
        raise ConfigError(f"{option} is a fraction of images: more than 0 and less than 1 (0.99 = 99%), got {limit:g}"
                          + ("; 1 means identical top-1 on every image, which only FP32 guarantees" if limit == 1
                             else ""))


def images_needed(kind: str, limit: float) -> int:
    """The fewest images on which the budget spans :data:`IMAGES_PER_STEP` images (one image is 100/n points):
    fewer cannot tell a graph that meets the budget from one that misses it by one image."""
    allowed = limit / 100.0 if kind == ACCURACY else 1.0 - limit
    return math.ceil(IMAGES_PER_STEP / allowed - 1e-9)


@dataclass(frozen=True)
class Trial:
    """One measured mix: the blocks kept float and the score of the graph on the accuracy data.

    Attributes:
        kept: Blocks kept float, in the order they were kept.
        score: Top-1 accuracy or agreement with FP32, percent.
        loss: Mean cross-entropy against the labels, or mean KL divergence from FP32.
        phase: ``plain``, ``sensitivity``, ``keep`` or ``give-back``.
        sample: Scored on the sensitivity sample rather than all the search images (never chosen).
    """

    kept: tuple[str, ...]
    score: float
    loss: float
    phase: str = ""
    sample: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"kept_float": list(self.kept), "score": self.score, "loss": self.loss, "phase": self.phase,
                "sample": self.sample}


@dataclass(frozen=True)
class BlockCost:
    """What one block costs when it alone is INT8: top-1 points lost against FP32 and task loss added."""

    block: str
    drop: float
    loss_added: float

    def to_dict(self) -> dict[str, Any]:
        return {"block": self.block, "points_lost": self.drop, "loss_added": self.loss_added}


@dataclass
class SearchResult:
    """The outcome: the chosen mix, whether it meets the goal, and every trial on the way.

    Attributes:
        met: The chosen mix meets the goal.
        chosen: The mix to write (the plain graph when it already meets the goal; else the best found).
        plain: The plain INT8 measurement.
        costs: Each block's cost alone, most costly first (empty when plain INT8 met the goal).
        trials: Every distinct mix measured, in order.
        stop: ``plain`` (met without search), ``met``, ``max-trials`` or ``exhausted`` (every block but one float).
    """

    met: bool
    chosen: Trial
    plain: Trial
    costs: list[BlockCost] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    stop: str = "plain"

    def cost_of(self, block: str) -> BlockCost | None:
        return next((c for c in self.costs if c.block == block), None)


class _Trials:
    """Every distinct mix measured, in order, each once, at most ``limit`` of them."""

    def __init__(self, measure: Measure, sample: Measure | None, goal: Goal, limit: int,
                 progress: ProgressFn | None) -> None:
        self.measure, self.sample, self.goal, self.limit, self.progress = measure, sample, goal, limit, progress
        self.seen: dict[tuple[bool, frozenset[str]], Trial] = {}
        self.done: list[Trial] = []

    def run(self, kept: Sequence[str], phase: str, *, sample: bool = False) -> Trial | None:
        """The mix's trial (measured now, or before); None when the limit is reached first. ``sample``: scored
        by the sample measure, when there is one."""
        sample = sample and self.sample is not None
        key = (sample, frozenset(kept))
        if key in self.seen:
            return self.seen[key]
        if len(self.done) >= self.limit:
            return None
        score, loss = (self.sample if sample else self.measure)(tuple(kept))  # type: ignore[misc]
        trial = Trial(tuple(kept), float(score), float(loss), phase, sample)
        self.seen[key] = trial
        self.done.append(trial)
        if self.progress:
            best = self.best_meeting() or min(self.whole(), key=lambda t: -t.score)
            self.progress(f"accuracy budget (best {best.score:.2f}% with {len(best.kept)} float)", len(self.done),
                          self.limit)
        return trial

    def whole(self) -> list[Trial]:
        """The trials scored on every search image (the ones a result may be)."""
        return [t for t in self.done if not t.sample]

    def best_meeting(self) -> Trial | None:
        """The mix that meets the goal with the fewest blocks float (then the best score), or None."""
        meeting = [t for t in self.whole() if self.goal.meets(t.score)]
        return min(meeting, key=lambda t: (len(t.kept), -t.score, t.loss)) if meeting else None


def search(blocks: Sequence[str], measure: Measure, goal: Goal, *, max_trials: int = DEFAULT_MAX_TRIALS,
           progress: ProgressFn | None = None, rank_measure: Measure | None = None,
           rank_reference: tuple[float, float] | None = None) -> SearchResult:
    """Find the fewest blocks to keep float so that the INT8 graph meets ``goal`` (see the module docstring).

    Args:
        blocks: The quantizable blocks, in graph order.
        measure: Kept-float blocks -> (score in percent, loss) of the graph built that way, on the search data.
        goal: What the graph must reach.
        max_trials: The most mixes measured (plain INT8 included); at least 1.
        progress: Called with (``accuracy budget (best ...)``: the best mix so far, trials done, max_trials)
            after each trial.
        rank_measure: ``measure`` on a sample of the search data, for step 2 only [default: ``measure``].
        rank_reference: FP32's (score, loss) on that sample [default: the goal's, for the whole data].

    Raises:
        ConfigError: ``max_trials`` below 1 or no blocks.
    """
    if max_trials < 1:
        raise ConfigError(f"--max-trials must be at least 1, got {max_trials}")
    if not blocks:
        raise ConfigError("no quantizable blocks to search over")
    order = list(dict.fromkeys(blocks))
    trials = _Trials(measure, rank_measure, goal, max_trials, progress)
    plain = trials.run((), "plain")
    assert plain is not None
    if goal.meets(plain.score):
        return SearchResult(True, plain, plain, [], trials.done, "plain")
    costs = _sensitivity(order, trials, rank_reference if rank_measure is not None and rank_reference is not None
                         else (goal.reference, goal.reference_loss))
    stop = _keep(order, costs, trials, goal)
    current = trials.best_meeting()
    if current is None:
        best = min(trials.whole(), key=lambda t: (-t.score, t.loss, len(t.kept)))
        return SearchResult(False, best, plain, costs, trials.done, stop)
    return SearchResult(True, _give_back(current, costs, trials, goal), plain, costs, trials.done, "met")


def _sensitivity(order: list[str], trials: _Trials, reference: tuple[float, float]) -> list[BlockCost]:
    """What each block quantized alone costs against FP32's ``reference`` (score, loss) (step 2), most first;
    fewer blocks when trials run out."""
    costs = []
    for block in order if len(order) > 1 else ():
        alone = trials.run(tuple(b for b in order if b != block), "sensitivity", sample=True)
        if alone is None:
            break
        costs.append(BlockCost(block, reference[0] - alone.score, alone.loss - reference[1]))
    return _rank(costs, order)


def _keep(order: list[str], costs: list[BlockCost], trials: _Trials, goal: Goal) -> str:
    """Keep blocks float, most costly first, until a mix meets the goal (step 3); why it stopped otherwise."""
    kept: list[str] = []
    for cost in costs[: len(order) - 1]:  # every block float is the FP32 graph, not an INT8 one
        trial = trials.run((*kept, cost.block), "keep")
        if trial is None:
            return "max-trials"
        kept.append(cost.block)
        if goal.meets(trial.score):
            return "met"
    return "exhausted" if len(costs) == len(order) or len(order) == 1 else "max-trials"


def _give_back(current: Trial, costs: list[BlockCost], trials: _Trials, goal: Goal) -> Trial:
    """Quantize again each kept block, cheapest first, while the goal holds (step 4)."""
    rank = {c.block: i for i, c in enumerate(costs)}
    kept = list(current.kept)
    for block in sorted(kept, key=lambda b: -rank.get(b, -1)):
        trial = trials.run(tuple(b for b in kept if b != block), "give-back")  # () is plain INT8: measured, failed
        if trial is None:
            break
        if goal.meets(trial.score):
            kept.remove(block)
            current = trial
    return current


def _rank(costs: list[BlockCost], order: list[str]) -> list[BlockCost]:
    """Most costly first: task loss added, then points lost, then graph order (equal measurements give one order).
    The loss first: it moves with every image, where top-1 moves by whole images (1.6 points each on a 64-image
    sample), so on a sample it orders blocks that lose the same number of images, or one image more or less."""
    position = {b: i for i, b in enumerate(order)}
    return sorted(costs, key=lambda c: (-round(c.loss_added, 12), -round(c.drop, 9), position[c.block]))
