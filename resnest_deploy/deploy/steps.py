"""Steps of a deploy run and how they run: each skipped when its record in the run state still matches, in order,
with a row per step for the final table.

A step names the files it reads and writes, the options that shape its output, and the steps it depends on (as
objects, not names): ``--dry-run`` says a step would rerun when one of those does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import interrupts
from ..progress import ProgressFn
from .state import RunState


@dataclass(frozen=True)
class Outcome:
    """How a step that ran ended: ``failure`` when its check failed (parity), and what the user should know."""

    failure: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(eq=False)
class Step:
    """One unit of work: the files it reads and writes, what else shapes its output, and how to do it.

    ``action`` returns an :class:`Outcome` (None: it succeeded with nothing to say). ``after`` holds the steps
    whose outputs this one consumes.
    """

    name: str
    inputs: list[Path]
    options: dict[str, Any]
    outputs: list[Path]
    action: Callable[[], Outcome | None]
    after: tuple[Step, ...] = ()


@dataclass(frozen=True)
class StepResult:
    """A row of the final table, and the warnings of the step (when it ran, or when its record was made)."""

    name: str
    status: str  # ran, up to date, failed, would run
    seconds: float
    output: str
    reason: str
    warnings: tuple[str, ...] = ()


def run_steps(steps: list[Step], state: RunState, *, force: bool, progress: ProgressFn | None) -> list[StepResult]:
    """Run every step whose record does not match (all of them with ``force``), recording each as it finishes.

    Raises:
        ResnestDeployError: A step's error; the steps finished before it stay recorded.
    """
    results: list[StepResult] = []
    for index, step in enumerate(steps):
        if progress:
            progress(step.name, index, len(steps))
        decision = state.decide(step.name, step.inputs, step.options, step.outputs, force)
        output = shown_output(step, state.run_dir)
        if not decision.run:
            record = state.steps[step.name]
            status = "failed" if record.get("status") == "failed" else "up to date"
            results.append(StepResult(step.name, status, 0.0, output, record.get("note") or "",
                                      tuple(record.get("warnings") or ())))
            continue
        state.forget(step.name)  # until it finishes, the step is not done (an interrupt leaves it to rerun)
        started = time.perf_counter()
        with interrupts.stage(step.name):
            outcome = step.action() or Outcome()
        seconds = time.perf_counter() - started
        status = "failed" if outcome.failure else "ran"
        state.record(step.name, step.inputs, step.options, step.outputs, status=status, seconds=seconds,
                     note=outcome.failure or "", warnings=list(outcome.warnings))
        results.append(StepResult(step.name, status, seconds, output, outcome.failure or decision.reason,
                                  outcome.warnings))
    if progress:
        progress("done", len(steps), len(steps))
    return results


def dry_run(steps: list[Step], state: RunState, *, force: bool) -> list[StepResult]:
    """Each step: whether it would run, and why (its own inputs, or a step it depends on that reruns)."""
    rows: list[StepResult] = []
    running: set[int] = set()
    for step in steps:
        decision = state.decide(step.name, step.inputs, step.options, step.outputs, force)
        upstream = [s for s in step.after if id(s) in running]
        if decision.run or upstream:
            running.add(id(step))
            reason = decision.reason if decision.run else f"after {upstream[0].name} reruns (its output may change)"
            rows.append(StepResult(step.name, "would run", 0.0, shown_output(step, state.run_dir), reason))
        else:
            rows.append(StepResult(step.name, "up to date", 0.0, shown_output(step, state.run_dir),
                                   "inputs, options and outputs unchanged"))
    return rows


def shown_output(step: Step, run_dir: Path) -> str:
    """A step's main output, relative to the run folder."""
    if not step.outputs:
        return ""
    try:
        return str(step.outputs[0].relative_to(run_dir))
    except ValueError:
        return str(step.outputs[0])
