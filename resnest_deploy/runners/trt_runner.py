"""TensorRT runner: runs a serialized engine with PyTorch CUDA buffers on one stream, optionally as a CUDA graph.

Before deserializing, the engine's manifest (written by ``build``) is checked against this host: TensorRT
version (a version-compatible engine may run on a later runtime) and GPU, according to the engine's
hardware-compatibility level. A mismatch is one clear error, never TensorRT's crash or a silent wrong result.
TensorRT is imported only after a CUDA device is found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from resnest_deploy.exporters.metadata import read_manifest
from resnest_deploy.exporters.tensorrt_env import GpuInfo, import_tensorrt, trt_version

from ..errors import ArtifactError, EngineMismatchError
from .base import InputMismatchError, Runner, TensorSpec


def _numbers(version: str) -> tuple[int, ...]:
    parts = []
    for part in str(version).split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def _cc_major(cc: str) -> int:
    try:
        return int(str(cc).split(".")[0])
    except ValueError:
        return -1


def check_engine_host(record: dict[str, Any], gpu: GpuInfo, version: str, name: str) -> None:
    """Raise :class:`EngineMismatchError` when an engine built as ``record`` cannot run on this host.

    Rules: the same TensorRT version, or a later major/minor runtime for a version-compatible engine; the same GPU
    model for hardware-compat ``none``, the same compute capability for ``same-cc``, compute capability 8.0+
    for ``ampere+``.
    """
    built = str(record.get("tensorrt", "unknown"))
    if built != version:
        newer = _numbers(version) >= _numbers(built) != ()
        if not (record.get("version_compatible") and newer):
            raise EngineMismatchError(
                f"{name} was built with TensorRT {built}; this host has TensorRT {version}: rebuild the engine here"
                + ("" if record.get("version_compatible") else " (or build it with --version-compatible)"))
    built_gpu = record.get("gpu") or {}
    level = record.get("hardware_compat", "none")
    where = f"{built_gpu.get('name', '?')} (sm {built_gpu.get('compute_capability', '?')})"
    here = f"{gpu.name} (sm {gpu.compute_capability})"
    if level == "ampere+":
        if _cc_major(gpu.compute_capability) < 8:
            raise EngineMismatchError(f"{name} is built for Ampere or newer GPUs; this host has {here}")
    elif level == "same-cc":
        if built_gpu.get("compute_capability") != gpu.compute_capability:
            raise EngineMismatchError(f"{name} was built for compute capability "
                                      f"{built_gpu.get('compute_capability')} on {where}; this host has {here}")
    elif built_gpu.get("name") != gpu.name or built_gpu.get("compute_capability") != gpu.compute_capability:
        raise EngineMismatchError(f"{name} was built on {where}; this host has {here}: rebuild the engine here "
                                  "(or build with --hardware-compat ampere+)")


class TrtRunner(Runner):
    """Runs a TensorRT engine file.

    Args:
        path: The engine (``.engine``/``.plan``) with its ``<engine>.json`` manifest beside it.
        device: CUDA device index.
        cuda_graph: Capture each input shape's execution as a CUDA graph and replay it.
    """

    def __init__(self, path: str | Path, *, device: int = 0, cuda_graph: bool = False) -> None:
        self.path = Path(path)
        self.device = device
        self.cuda_graph = cuda_graph
        self.name = "tensorrt"
        self._specs: list[TensorSpec] = []
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}

    def activate(self) -> None:
        record = read_manifest(self.path)
        if record is None or "engine" not in record:
            raise ArtifactError(f"{self.path}: no manifest ({self.path.name}.json) beside the engine; engines are "
                                "checked against the GPU and TensorRT version they were built with")
        trt, gpu = import_tensorrt("running a TensorRT engine", self.device)
        engine_record = record["engine"]
        check_engine_host(engine_record, gpu, trt_version(trt), self.path.name)
        import torch

        self._torch = torch
        self._trt = trt
        self._cuda = torch.device("cuda", self.device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if engine_record.get("version_compatible"):
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise EngineMismatchError(f"{self.path.name}: TensorRT could not deserialize the engine (corrupt file, or "
                                      "built for another TensorRT version or GPU)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._stream = torch.cuda.Stream(device=self._cuda)
        self._limits = {}
        self._specs = []
        for name in self._inputs:
            low, _, high = (tuple(d) for d in self._engine.get_tensor_profile_shape(name, 0))
            self._limits[name] = (low, high)
            shape = tuple(None if lo != hi else int(lo) for lo, hi in zip(low, high))
            self._specs.append(TensorSpec(name, np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))), shape))
        self.name = f"tensorrt[{trt_version(trt)},{engine_record.get('precision', '?')}]"

    def deactivate(self) -> None:
        self._graphs.clear()
        for attribute in ("_context", "_engine", "_runtime"):
            if hasattr(self, attribute):
                delattr(self, attribute)

    @property
    def input_specs(self) -> list[TensorSpec]:
        return self._specs

    def _torch_dtype(self, name: str):
        return self._torch.from_numpy(np.empty(0, self._trt.nptype(self._engine.get_tensor_dtype(name)))).dtype

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        for name, array in feed.items():
            low, high = self._limits[name]
            if any(not lo <= s <= hi for s, lo, hi in zip(array.shape, low, high)):
                raise InputMismatchError(f"{self.name}: input {name} shape {list(array.shape)} is outside the engine's "
                                         f"profile {list(low)}..{list(high)}")
        shape_key = tuple(s for a in feed.values() for s in a.shape)
        with torch.cuda.stream(self._stream):
            if self.cuda_graph and shape_key in self._graphs:
                graph, inputs, outputs = self._graphs[shape_key]
                for name, array in feed.items():
                    inputs[name].copy_(torch.from_numpy(array), non_blocking=True)
                graph.replay()
            else:
                inputs = {name: torch.from_numpy(np.ascontiguousarray(array)).to(self._cuda, non_blocking=True)
                          for name, array in feed.items()}
                outputs = self._bind(inputs)
                if not self._context.execute_async_v3(self._stream.cuda_stream):
                    raise ArtifactError(f"{self.name}: TensorRT execution failed")
                if self.cuda_graph:
                    # After one ordinary run with these shapes, capture the same launch as a CUDA graph.
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, stream=self._stream):
                        self._context.execute_async_v3(self._stream.cuda_stream)
                    self._graphs[shape_key] = (graph, inputs, outputs)
        self._stream.synchronize()
        return {name: tensor.cpu().numpy() for name, tensor in outputs.items()}

    def _bind(self, inputs: dict[str, Any]) -> dict[str, Any]:
        for name, tensor in inputs.items():
            self._context.set_input_shape(name, tuple(tensor.shape))
            self._context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            outputs[name] = self._torch.empty(shape, dtype=self._torch_dtype(name), device=self._cuda)
            self._context.set_tensor_address(name, outputs[name].data_ptr())
        return outputs
