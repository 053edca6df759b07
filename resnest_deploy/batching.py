"""Running arrays through models in batches, including graphs whose batch size is fixed (numpy only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np


def fit_batch(x: np.ndarray, batch: int) -> np.ndarray:
    """``x`` cut or padded (by repeating its last sample) to exactly ``batch`` samples."""
    if len(x) >= batch:
        return x[:batch]
    return np.concatenate([x, np.repeat(x[-1:], batch - len(x), axis=0)])


def chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive chunks of at most ``size`` covering ``range(total)``."""
    for start in range(0, total, size):
        yield start, min(start + size, total)


def run_batched(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, *, fixed: int | None,
                step: int | None = None) -> np.ndarray:
    """Run ``x`` in chunks: of a graph's fixed batch (the last chunk padded, its padding dropped from the
    result), else of ``step`` samples (default: all at once)."""
    size = fixed or step or len(x)
    outputs = []
    for start, stop in chunks(len(x), size):
        chunk = x[start:stop]
        outputs.append(run(fit_batch(chunk, fixed) if fixed else chunk)[: len(chunk)])
    return np.concatenate(outputs)
