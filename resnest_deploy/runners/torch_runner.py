"""Eager PyTorch runner (CPU or CUDA, FP32 or FP16 autocast)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .base import Runner, TensorSpec


class TorchRunner(Runner):
    """Runs an eager model; input ``input`` [N,3,H,W] float32, output ``logits``.

    Args:
        model: Network in eval mode.
        device: ``cpu`` or ``cuda``.
        precision: ``fp32``, or ``fp16`` for CUDA autocast.
        size: Expected spatial size, or None to accept any.
    """

    def __init__(self, model: torch.nn.Module, *, device: str = "cpu", precision: str = "fp32",
                 size: int | None = None) -> None:
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device cuda requested but no CUDA device is available")
        if precision not in ("fp32", "fp16") or (precision == "fp16" and device != "cuda"):
            raise ConfigError(f"eager precision {precision!r} on {device} is not supported (fp16 needs cuda)")
        self.model = model.eval()
        self.device = device
        self.precision = precision
        self.size = size
        self.name = f"eager[{device},{precision}]"

    def activate(self) -> None:
        self.model.to(self.device)

    @property
    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec("input", np.dtype(np.float32), (None, 3, self.size, self.size))]

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = torch.from_numpy(feed["input"]).to(self.device)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.precision == "fp16"):
            logits = self.model(x)
        return {"logits": logits.float().cpu().numpy()}

    def forward_with_stages(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs of the stem and of every block (names from ``model.stages()``), plus ``logits``."""
        captured: dict[str, np.ndarray] = {}
        hooks = [module.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(
            name, out.detach().float().cpu().numpy())) for name, module in self.model.stages()]
        try:
            captured["logits"] = self._infer({"input": x})["logits"]
        finally:
            for hook in hooks:
                hook.remove()
        return captured
