"""TensorRT runner: runs a serialized engine on one stream with device buffers, optionally as CUDA graphs.

Before deserializing, the engine's manifest (written by ``build``) is checked against this host: TensorRT version
and GPU by the rules in :mod:`resnest_deploy.exporters.tensorrt_env`. A mismatch is one clear error, never
TensorRT's crash or a silent wrong result. TensorRT is imported only after a CUDA device is found, and device
``N`` is made current before the runtime exists.

Buffers are kept per input shape. Plain runs share one execution context and bind its shapes and addresses
before every launch. With CUDA graphs, each input shape gets its own execution context, captured once: a graph
bakes in its context's shapes and addresses, so two shapes sharing a context would replay each other's state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, EngineMismatchError
from resnest_deploy.exporters.metadata import read_manifest
from resnest_deploy.exporters.tensorrt_env import check_engine_host, import_tensorrt, trt_version
from resnest_deploy.exporters.tensorrt_options import EngineRecord
from .base import InputMismatchError, Runner, TensorSpec


@dataclass
class _Bound:
    """An execution context with device buffers for one set of input shapes (and its graph, if captured)."""

    context: Any
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    graph: Any = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


class TrtRunner(Runner):
    """Runs a TensorRT engine file.

    Args:
        path: The engine (``.engine``/``.plan``/``.trt``) with its ``<engine>.json`` manifest beside it.
        device: CUDA device index.
        cuda_graph: Capture each input shape's execution as a CUDA graph (own context) and replay it.
        backend: Device memory/stream/graph provider [default: :class:`CudaDevice` on ``device``].
    """

    def __init__(self, path: str | Path, *, device: int = 0, cuda_graph: bool = False, backend: Any = None) -> None:
        self.path = Path(path)
        self.device = device
        self.cuda_graph = cuda_graph
        self.name = "tensorrt"
        self._backend = backend
        self._specs: list[TensorSpec] = []
        self._bound: dict[tuple[int, ...], _Bound] = {}

    def activate(self) -> None:
        record = read_manifest(self.path)
        if record is None or "engine" not in record:
            raise ArtifactError(f"{self.path}: no manifest ({self.path.name}.json) beside the engine; engines are "
                                "checked against the GPU and TensorRT version they were built with")
        trt, gpu = import_tensorrt("running a TensorRT engine", self.device)  # device N is current from here
        engine_record = EngineRecord.from_dict(record["engine"])
        check_engine_host(engine_record, gpu, trt_version(trt), self.path.name)
        if self._backend is None:
            from .cuda_device import CudaDevice

            self._backend = CudaDevice(self.device)
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if engine_record.version_compatible:
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise EngineMismatchError(f"{self.path.name}: TensorRT could not deserialize the engine (corrupt file, or "
                                      "built for another TensorRT version or GPU)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._limits: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self._specs = []
        for name in self._inputs:
            low, _, high = (tuple(int(x) for x in d) for d in self._engine.get_tensor_profile_shape(name, 0))
            self._limits[name] = (low, high)
            shape = tuple(None if lo != hi else lo for lo, hi in zip(low, high))
            self._specs.append(TensorSpec(name, self._dtype(name), shape))
        self.name = f"tensorrt[{trt_version(trt)},{engine_record.precision}]"

    def deactivate(self) -> None:
        self._bound.clear()
        for attribute in ("_context", "_engine", "_runtime"):
            if hasattr(self, attribute):
                delattr(self, attribute)

    @property
    def input_specs(self) -> list[TensorSpec]:
        return self._specs

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))

    def _check_profile(self, feed: dict[str, np.ndarray]) -> None:
        for name, array in feed.items():
            low, high = self._limits[name]
            if any(not lo <= s <= hi for s, lo, hi in zip(array.shape, low, high)):
                raise InputMismatchError(f"{self.name}: input {name} shape {list(array.shape)} is outside the engine's "
                                         f"profile {list(low)}..{list(high)}")

    def _execute(self, bound: _Bound) -> None:
        """Launch one inference of ``bound``'s context on the stream; TensorRT's False is an error, not a no-op."""
        if not bound.context.execute_async_v3(self._backend.stream_handle):
            raise ArtifactError(f"{self.name}: TensorRT execution failed (execute_async_v3 returned False)")

    def _bind_context(self, bound: _Bound) -> None:
        """Set ``bound``'s input shapes and every tensor address on its context."""
        for name, shape in bound.shapes.items():
            bound.context.set_input_shape(name, shape)
        for name, tensor in {**bound.inputs, **bound.outputs}.items():
            bound.context.set_tensor_address(name, self._backend.address(tensor))

    def _prepare(self, shapes: dict[str, tuple[int, ...]]) -> _Bound:
        """Buffers (and, for CUDA graphs, a context and a captured graph) for one set of input shapes."""
        key = tuple(s for name in self._inputs for s in shapes[name])
        if key in self._bound:
            return self._bound[key]
        context = self._engine.create_execution_context() if self.cuda_graph else self._context
        inputs = {name: self._backend.empty(shapes[name], self._dtype(name)) for name in self._inputs}
        bound = _Bound(context, inputs, {}, shapes=dict(shapes))
        for name, shape in shapes.items():
            context.set_input_shape(name, shape)
        bound.outputs = {name: self._backend.empty(tuple(context.get_tensor_shape(name)), self._dtype(name))
                         for name in self._outputs}
        if self.cuda_graph:
            self._bind_context(bound)
            self._backend.on_stream(lambda: self._execute(bound))  # one ordinary run first (lazy initialisation)
            self._backend.synchronize()
            bound.graph = self._backend.capture(lambda: self._execute(bound))
        self._bound[key] = bound
        return bound

    def _launch(self, bound: _Bound) -> None:
        if bound.graph is not None:
            self._backend.on_stream(bound.graph.replay)
        else:
            self._bind_context(bound)  # the plain context is shared by every shape: bind before each launch
            self._backend.on_stream(lambda: self._execute(bound))

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_profile(feed)
        bound = self._prepare({name: tuple(array.shape) for name, array in feed.items()})
        for name, array in feed.items():
            self._backend.copy_in(bound.inputs[name], array)
        self._launch(bound)
        return {name: self._backend.copy_out(tensor) for name, tensor in bound.outputs.items()}

    def engine_call(self, feed: dict[str, np.ndarray]) -> tuple[Callable[[], None], Callable[[], None]]:
        """(run, sync) timing the engine alone: ``feed`` is uploaded once, outputs stay preallocated on the device,
        ``run`` only launches (or replays) and ``sync`` waits for the device."""
        self.infer(feed)  # checks the feed, prepares buffers (and the graph), uploads nothing twice below
        bound = self._prepare({name: tuple(array.shape) for name, array in feed.items()})
        for name, array in feed.items():
            self._backend.copy_in(bound.inputs[name], array)
        return (lambda: self._launch(bound)), self._backend.synchronize
