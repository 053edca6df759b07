"""Interleaved latency measurement.

On a shared, noisy machine two absolute times taken minutes apart cannot be compared. Contenders are therefore
run round by round (A B C A B C ...), after a separate warm-up, and compared by the ratio of their medians.
CPU timings use ``time.perf_counter``; a contender that runs on a GPU passes a ``sync`` callable that waits for
the device (e.g. ``torch.cuda.synchronize``) so that the clock covers the work.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Contender:
    """Something to time: ``run()`` performs one inference of ``batch`` images."""

    name: str
    run: Callable[[], Any]
    batch: int = 1
    sync: Callable[[], None] | None = None


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one contender, in milliseconds per call."""

    name: str
    batch: int
    samples_ms: tuple[float, ...] = field(repr=False)

    @property
    def p50(self) -> float:
        return _percentile(self.samples_ms, 50)

    @property
    def p90(self) -> float:
        return _percentile(self.samples_ms, 90)

    @property
    def p99(self) -> float:
        return _percentile(self.samples_ms, 99)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples_ms)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.samples_ms)

    @property
    def throughput(self) -> float:
        """Images per second at the median latency."""
        return self.batch * 1000.0 / self.p50 if self.p50 > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "batch": self.batch, "iters": len(self.samples_ms), "p50_ms": self.p50,
                "p90_ms": self.p90, "p99_ms": self.p99, "mean_ms": self.mean, "std_ms": self.std,
                "throughput_ips": self.throughput}


def _percentile(values: tuple[float, ...], q: float) -> float:
    """Linear-interpolated percentile of a non-empty sample."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure_interleaved(
    contenders: list[Contender], *, warmup: int = 3, iters: int = 20,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[LatencyStats]:
    """Time contenders round by round after a separate warm-up.

    Args:
        contenders: What to time; each ``run`` must do the same work every call.
        warmup: Untimed calls per contender before measuring (first-call allocation, caches, lazy init).
        iters: Timed rounds; each round calls every contender once, in order.
        progress: Called with (phase, done, total) as rounds finish; phase is ``warm-up`` or ``measure``.

    Returns:
        One :class:`LatencyStats` per contender, in the order given.
    """
    if not contenders:
        return []
    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1, got {warmup} and {iters}")
    for i in range(warmup):
        for c in contenders:
            c.run()
            if c.sync:
                c.sync()
        if progress:
            progress("warm-up", i + 1, warmup)
    samples: list[list[float]] = [[] for _ in contenders]
    for i in range(iters):
        for c, bucket in zip(contenders, samples):
            if c.sync:
                c.sync()
            start = time.perf_counter()
            c.run()
            if c.sync:
                c.sync()
            bucket.append((time.perf_counter() - start) * 1000.0)
        if progress:
            progress("measure", i + 1, iters)
    return [LatencyStats(c.name, c.batch, tuple(s)) for c, s in zip(contenders, samples)]


def environment(threads: int | None = None) -> dict[str, Any]:
    """CPU model, core count, thread setting and library versions, for every latency report."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "threads": threads,
                            "python": platform.python_version(),
                            "platform": platform.platform()}
    modules = __import__("sys").modules
    for name in ("torch", "onnxruntime", "onnx", "tensorrt"):
        module = modules.get(name)
        if module is not None:
            info[name] = getattr(module, "__version__", "unknown")
    torch = modules.get("torch")
    if torch is not None and torch.cuda.is_available():  # only when torch is loaded anyway: never load CUDA here
        index = torch.cuda.current_device()
        capability = ".".join(map(str, torch.cuda.get_device_capability(index)))
        info["gpu"] = f"{torch.cuda.get_device_name(index)} (sm {capability})"
        info["cuda"] = torch.version.cuda
    return info
