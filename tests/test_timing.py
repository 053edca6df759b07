"""The interleaving harness: call order, warm-up separation, statistics (no speed is asserted)."""

from __future__ import annotations

import numpy as np
import pytest

from resnest_deploy.bench import Contender, measure_interleaved
from resnest_deploy.timing import LatencyStats


def test_contenders_run_interleaved_after_warmup():
    calls: list[str] = []
    events: list[tuple[str, int, int]] = []
    contenders = [Contender(n, lambda n=n: calls.append(n), batch=2) for n in "ABC"]
    stats = measure_interleaved(contenders, warmup=2, iters=4, progress=lambda *e: events.append(e))
    assert calls == list("ABC") * 6  # 2 warm-up rounds then 4 timed rounds, always A B C
    assert [s.name for s in stats] == ["A", "B", "C"]
    assert all(len(s.samples_ms) == 4 for s in stats)
    assert events[:2] == [("warm-up", 1, 2), ("warm-up", 2, 2)] and events[-1] == ("measure", 4, 4)


def test_sync_wraps_each_timed_call():
    log: list[str] = []
    measure_interleaved([Contender("gpu", lambda: log.append("run"), sync=lambda: log.append("sync"))],
                        warmup=0, iters=2)
    assert log == ["sync", "run", "sync"] * 2


def test_statistics_match_numpy():
    samples = (5.0, 1.0, 9.0, 3.0, 7.0, 2.0)
    s = LatencyStats("x", 4, samples)
    for q, value in ((50, s.p50), (90, s.p90), (99, s.p99)):
        assert value == pytest.approx(np.percentile(samples, q))
    assert s.mean == pytest.approx(np.mean(samples)) and s.std == pytest.approx(np.std(samples))
    assert s.throughput == pytest.approx(4 * 1000 / np.median(samples))


def test_bad_arguments():
    with pytest.raises(ValueError):
        measure_interleaved([Contender("a", lambda: None)], iters=0)
