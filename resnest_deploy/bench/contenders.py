"""What ``bench`` times, and how, on CPU-only and CUDA hosts.

On a CPU-only host the reference is eager PyTorch FP32 on the CPU. On a CUDA host the eager contenders run on the
GPU, where a user would otherwise deploy them: FP32 (TF32 switched off, so it is FP32-exact), FP16 autocast and
FP16 channels-last; ``compile`` adds ``torch.compile(mode="reduce-overhead")`` FP16 channels-last (CUDA graphs),
the strongest contender a TensorRT engine must beat. GPU contenders are timed with device-resident inputs and a
device synchronisation around each timed call; TensorRT engines get two rows: the engine alone (inputs on the
device, outputs preallocated) and end to end (host arrays in and out).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError

RunSync = tuple[Callable[[], Any], Callable[[], None] | None]


@dataclass(frozen=True)
class EagerSpec:
    """One eager contender: where it runs and in which numerics."""

    label: str
    device: str
    precision: str
    channels_last: bool = False
    compiled: bool = False


def eager_contenders(backends: tuple[str, ...], cuda: bool) -> list[EagerSpec]:
    """The eager contenders for the selected backends on this host; the first one is the ratios' reference.

    Raises:
        ConfigError: ``compile`` on a host without CUDA (its reduce-overhead mode captures CUDA graphs).
    """
    specs: list[EagerSpec] = []
    if "eager" in backends:
        specs += [EagerSpec("eager[cuda,fp32]", "cuda", "fp32"), EagerSpec("eager[cuda,fp16]", "cuda", "fp16"),
                  EagerSpec("eager[cuda,fp16,channels-last]", "cuda", "fp16", channels_last=True)] if cuda else \
            [EagerSpec("eager[cpu,fp32]", "cpu", "fp32")]
    if "compile" in backends:
        if not cuda:
            raise ConfigError("the compile backend times torch.compile(mode='reduce-overhead'), which needs a CUDA "
                              "GPU; on this host use eager and ort")
        specs.append(EagerSpec("compile[cuda,fp16,channels-last,reduce-overhead]", "cuda", "fp16",
                               channels_last=True, compiled=True))
    return specs


@dataclass
class EagerContender:
    """A prepared eager model for one :class:`EagerSpec` (its own copy of the weights on its device)."""

    spec: EagerSpec
    model: Any
    closers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def load(cls, spec: EagerSpec, model: Any) -> EagerContender:
        import torch

        net = copy.deepcopy(model).eval().to(spec.device)
        if spec.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if spec.compiled:
            net = torch.compile(net.half(), mode="reduce-overhead")
        return cls(spec, net)

    def prepare(self, x: np.ndarray) -> RunSync:
        """(run, sync) for one batch: the input is put on the device once, outside the timed call."""
        import torch

        spec = self.spec
        tensor = torch.from_numpy(x).to(spec.device)
        if spec.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        if spec.compiled:
            tensor = tensor.half()
        cuda = spec.device == "cuda"
        autocast = cuda and spec.precision == "fp16" and not spec.compiled

        def run() -> Any:
            with torch.inference_mode(), _tf32(cuda and spec.precision == "fp32"), \
                    torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
                return self.model(tensor)

        return run, (torch.cuda.synchronize if cuda else None)


class _tf32:
    """Switch TF32 off around an FP32 call on CUDA (PyTorch's cuDNN default would make it TF32, not FP32)."""

    def __init__(self, exact_fp32: bool) -> None:
        self.exact = exact_fp32

    def __enter__(self) -> None:
        if self.exact:
            import torch

            self.saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc: object) -> None:
        if self.exact:
            import torch

            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved


def runner_call(runner: Any, x: np.ndarray, *, engine_only: bool) -> RunSync:
    """(run, sync) for an artifact runner: end to end through ``infer``, or the engine alone for TensorRT."""
    feed = {runner.input_specs[0].name: x}
    if engine_only:
        return runner.engine_call(feed)
    return (lambda: runner.infer(feed)), None
