"""Latency measurement: warm-up separated from timed runs, contenders interleaved round by round."""

from ..timing import Contender, LatencyStats, environment, measure_interleaved

__all__ = ["Contender", "LatencyStats", "environment", "measure_interleaved"]
