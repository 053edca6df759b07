"""Stage timings of long operations (export, quantize), recorded in their manifests."""

from __future__ import annotations

import time


def stage_durations(starts: dict[str, float]) -> dict[str, float]:
    """Seconds per stage, from each stage's start time (``perf_counter``) to the next one's, the last to now."""
    names = list(starts)
    ends = [starts[n] for n in names[1:]] + [time.perf_counter()]
    return {name: round(end - starts[name], 3) for name, end in zip(names, ends)}
