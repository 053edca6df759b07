"""Device memory, one stream and CUDA graphs for the TensorRT runner, through PyTorch's CUDA API.

Kept behind this small interface so the runner's logic (buffers per shape, a context per captured graph) can be
exercised without a GPU by a test stand-in with the same methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class CudaDevice:
    """CUDA device ``index``, made current, with one stream for every copy, launch and graph."""

    def __init__(self, index: int) -> None:
        import torch

        self._torch = torch
        torch.cuda.set_device(index)
        self.device = torch.device("cuda", index)
        self.stream = torch.cuda.Stream(device=self.device)

    @property
    def stream_handle(self) -> int:
        """The raw ``cudaStream_t`` TensorRT enqueues on."""
        return self.stream.cuda_stream

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        torch_dtype = self._torch.from_numpy(np.empty(0, dtype)).dtype
        return self._torch.empty(tuple(shape), dtype=torch_dtype, device=self.device)

    def address(self, tensor: Any) -> int:
        return tensor.data_ptr()

    def copy_in(self, tensor: Any, array: np.ndarray) -> None:
        with self._torch.cuda.stream(self.stream):
            tensor.copy_(self._torch.from_numpy(np.ascontiguousarray(array)), non_blocking=True)

    def copy_out(self, tensor: Any) -> np.ndarray:
        self.synchronize()
        return tensor.cpu().numpy()

    def on_stream(self, fn: Callable[[], Any]) -> Any:
        with self._torch.cuda.stream(self.stream):
            return fn()

    def capture(self, fn: Callable[[], Any]) -> Any:
        """A CUDA graph of what ``fn`` launches on the stream; ``.replay()`` relaunches it."""
        graph = self._torch.cuda.CUDAGraph()
        with self._torch.cuda.graph(graph, stream=self.stream):
            fn()
        return graph

    def synchronize(self) -> None:
        self.stream.synchronize()
