"""A strict test double of the ``tensorrt`` module, generated from the real API surfaces of 10.16 and 11.4.

This is a FAKE standing in for TensorRT, which cannot be installed here (no GPU, no NVIDIA package index). It
is strict where it matters: every module attribute, enum member and class member comes from
``tests/data/tensorrt-api/tensorrt-<version>-api.txt`` (read from the real bindings) plus ``supplement.txt``
(documented names those lists do not enumerate); anything else raises AttributeError, exactly as the real
module would, so code using a name removed in 11 (``BuilderFlag.FP16``, ``IInt8EntropyCalibrator2``, ...)
fails here. Behaviour is minimal and recorded (flags, profiles, timing-cache bytes) for tests to assert on:
the parser reads the ONNX with ``onnx`` and rejects op types listed in ``reject_ops``; a "built engine" is a
JSON blob describing the build. Deserialized, that blob is an engine with one input (the built profile) and one
``logits`` output whose execution contexts compute ``logits[n, k] = (k + 1) * mean(input[n])`` from buffers in
``double.memory`` (filled by :class:`FakeDevice`, a host-memory stand-in for the CUDA device). Behaviour the
runner relies on is modelled where the documentation states it: a version-compatible plan deserializes only with
``engine_host_code_allowed``; the inspector reports formats only with an execution context whose input shapes are
set ("N/A due to dynamic shapes" otherwise), in the 10.x layout (``Format/Datatype``) or 11.x layout (``Format``
and ``DataType``). Arguments are checked as the bindings check them (pybind11 raises TypeError for an argument of the wrong type:
``Logger(None)``, a tensor name that is not a ``str``, a logger that is not a ``Logger``); where TensorRT only
logs an error and returns a placeholder (an unknown tensor name, a profile index past the engine's profiles, a
buffer of another element type than the engine's) the double raises instead, which is stricter than TensorRT
and said where it happens. It proves the code's API use and logic, not TensorRT's behaviour; ``pytest -m gpu``
on a GPU host does that.
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "tensorrt-api"
VERSIONS = {"10": "10.16.1.11", "11": "11.4.0.106"}
CLASSES = 10  # width of the double engine's logits
TENSORS = ("input", "logits")  # the double engine's I/O tensors


def _typed(value, kind: type | tuple[type, ...], what: str):
    """pybind11's argument check: a value of another type is a TypeError (None included)."""
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise TypeError(f"{what}: incompatible function arguments ({type(value).__name__})")
    return value


def _tensor(name, allowed=TENSORS) -> str:
    """A tensor name: a str (else TypeError, as the bindings), naming one of the engine's tensors (TensorRT logs
    an error and returns a placeholder for an unknown name; the double raises: stricter)."""
    _typed(name, str, "tensor name")
    if name not in allowed:
        raise KeyError(f"the double engine has no {'/'.join(allowed)} tensor named {name!r}")
    return name


def _logger_arg(logger):
    if not (isinstance(logger, StrictObject) and logger._kind == "Logger"):
        raise TypeError(f"expected a tensorrt.ILogger, got {type(logger).__name__}")
    return logger


@dataclass
class Surface:
    version: str
    names: set[str] = field(default_factory=set)
    sections: dict[str, set[str]] = field(default_factory=dict)
    enum_order: dict[str, list[str]] = field(default_factory=dict)  # the bindings' member order (flag bits)

    def members(self, kind: str) -> set[str]:
        return self.sections.get(kind, set())


def _parse(path: Path, surface: Surface) -> None:
    section = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.startswith("#") and not raw.startswith("## "):
            continue
        if raw.startswith("## "):
            section = raw[3:].strip()
            if section != "dir(trt)":
                surface.sections.setdefault(section, set())
            continue
        line = raw.strip()
        if not line or section is None or line == "<NOT PRESENT>":
            continue
        if section == "dir(trt)":
            surface.names.add(line)
        elif "[" in line:
            surface.sections[section].add(line.split()[0])
        else:
            members = [m.strip() for m in line.split(",") if m.strip()]
            surface.sections[section].update(members)
            surface.enum_order.setdefault(section, []).extend(members)


def load_surface(version: str) -> Surface:
    """The names of TensorRT ``version`` (``10.16.1.11`` or ``11.4.0.106``), plus the documented supplement."""
    surface = Surface(version)
    _parse(DATA / f"tensorrt-{version}-api.txt", surface)
    _parse(DATA / "supplement.txt", surface)
    return surface


class EnumValue:
    def __init__(self, enum: str, name: str, index: int) -> None:
        self.enum, self.name, self.index = enum, name, index

    def __int__(self) -> int:
        return self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnumValue) and (other.enum, other.name) == (self.enum, self.name)

    def __hash__(self) -> int:
        return hash((self.enum, self.name))

    def __repr__(self) -> str:
        return f"<{self.enum}.{self.name}: {self.index}>"


class StrictEnum:
    def __init__(self, name: str, members: list[str], version: str) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", {m: EnumValue(name, m, i) for i, m in enumerate(members)})
        object.__setattr__(self, "_version", version)

    def __getattr__(self, item: str):
        values = object.__getattribute__(self, "_values")
        if item in values:
            return values[item]
        raise AttributeError(f"tensorrt {self._version}: {self._name} has no member {item!r}")


class StrictObject:
    """An instance of TensorRT class ``kind``: only its real member names exist; set/called ones are recorded."""

    def __init__(self, kind: str, double: TensorRTDouble, **impl) -> None:
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_double", double)
        object.__setattr__(self, "_impl", impl)
        object.__setattr__(self, "_set", {})

    def _check(self, item: str) -> None:
        if item not in self._double.surface.members(self._kind):
            raise AttributeError(f"tensorrt {self._double.version}: {self._kind} has no attribute {item!r}")

    def __getattr__(self, item: str):
        if item.startswith("_"):
            raise AttributeError(item)
        self._check(item)
        if item in self._impl:
            return self._impl[item]
        if item in self._set:
            return self._set[item]
        return lambda *a, **k: self._double.calls.append((self._kind, item, a, k))

    def __setattr__(self, item: str, value) -> None:
        self._check(item)
        self._set[item] = value
        self._double.calls.append((self._kind, f"{item}=", (value,), {}))


class TensorRTDouble(types.ModuleType):
    """``tensorrt`` for one version. Attributes not in that version's ``dir(trt)`` raise AttributeError."""

    def __init__(self, major: str, *, reject_ops: tuple[str, ...] = (), fail_execute: bool = False,
                 fail_build: bool = False) -> None:
        super().__init__("tensorrt")
        object.__setattr__(self, "major", major)
        object.__setattr__(self, "version", VERSIONS[major])
        object.__setattr__(self, "surface", load_surface(VERSIONS[major]))
        object.__setattr__(self, "reject_ops", reject_ops)
        object.__setattr__(self, "fail_execute", fail_execute)
        object.__setattr__(self, "fail_build", fail_build)  # the builder fails (None), as when a tactic cannot fit
        object.__setattr__(self, "calls", [])
        object.__setattr__(self, "built", [])
        object.__setattr__(self, "contexts", [])
        object.__setattr__(self, "memory", {})  # address -> host array (see FakeDevice)
        object.__setattr__(self, "_enums", {})
        object.__setattr__(self, "gpu_cc", "8.6")  # the GPU the double runs on (install_double sets the faked one)
        object.__setattr__(self, "parsed", set())  # ids of networks a parser filled
        object.__setattr__(self, "inspected", [])  # input shapes the inspector saw on its context
        object.__setattr__(self, "launched", set())  # ids of contexts launched outside a capture
        object.__setattr__(self, "capturing", False)
        object.__setattr__(self, "streams", set())  # stream handles the (fake) device created

    def __getattr__(self, item: str):
        if item == "__version__":
            return self.version
        if item.startswith("__") or item not in self.surface.names:
            raise AttributeError(f"tensorrt {self.version} has no attribute {item!r}")
        if item == "nptype":
            return self._nptype
        factory = {"Logger": self._logger, "Builder": self._builder, "OnnxParser": self._parser,
                   "Runtime": self._runtime}.get(item)
        if factory is not None:
            return _ClassProxy(item, self, factory)
        members = self.surface.members(item)
        if members and all(m[:1].isupper() for m in members):
            if item not in self._enums:
                order = self.surface.enum_order.get(item) or sorted(members)
                self._enums[item] = StrictEnum(item, order, self.version)
            return self._enums[item]
        def unmodelled(*args, **kwargs):
            raise NotImplementedError(f"tensorrt.{item} exists in {self.version} but the test double does not model it")

        return _ClassProxy(item, self, unmodelled)

    def cache_tag(self) -> bytes:
        return f"TRTDOUBLE-CACHE[{self.version}/sm{self.gpu_cc}]".encode()

    # -- factories ---------------------------------------------------------------------------------------
    def _logger(self, *args):
        # Logger(min_severity=Logger.WARNING): the one optional argument must be a Logger.Severity.
        if args and not (isinstance(args[0], EnumValue) and args[0].enum == "Logger.Severity"):
            raise TypeError(f"Logger(): incompatible function arguments ({type(args[0]).__name__})")
        return StrictObject("Logger", self)

    def _nptype(self, dtype):
        import numpy as np

        return {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32}[dtype.name]

    def _builder(self, logger):
        _logger_arg(logger)
        state = {"network_flags": None, "profiles": [], "flags_set": set(), "flags_cleared": set()}
        self.calls.append(("Builder", "__init__", (), {}))

        def create_network(flags=0):
            state["network_flags"] = flags
            return StrictObject("INetworkDefinition", self)

        def create_builder_config():
            cache_box: dict = {}

            def create_timing_cache(data):
                # The double's cache format: a tag naming the TensorRT version and GPU it was made on, then the
                # timings of every build that used it (the real format is opaque; only its contract is modelled).
                data = bytes(data)
                tag = self.cache_tag()
                kept = data[len(tag):] if data.startswith(tag) else data
                cache = StrictObject("ITimingCache", self, serialize=lambda: tag + box["timings"])
                box = {"timings": kept, "foreign": bool(data) and not data.startswith(tag)}
                object.__setattr__(cache, "box", box)
                return cache

            def set_timing_cache(cache, ignore_mismatch):
                _typed(ignore_mismatch, bool, "set_timing_cache(ignore_mismatch)")
                # IBuilderConfig.set_timing_cache: False for a cache from another device or version unless
                # ignore_mismatch is True (then it is taken, and its timings may not fit).
                if cache.box["foreign"] and not ignore_mismatch:
                    return False
                cache_box["cache"] = cache
                return True

            def set_flag(flag):
                state["flags_set"].add(flag.name)

            def clear_flag(flag):
                state["flags_cleared"].add(flag.name)

            def add_optimization_profile(profile):
                state["profiles"].append(profile)
                return len(state["profiles"]) - 1

            config = StrictObject(
                "IBuilderConfig", self, create_timing_cache=create_timing_cache, set_timing_cache=set_timing_cache,
                get_timing_cache=lambda: cache_box["cache"], set_flag=set_flag, clear_flag=clear_flag,
                add_optimization_profile=add_optimization_profile,
                set_memory_pool_limit=lambda pool, size: state.__setitem__("workspace", (pool.name, size)),
            )
            object.__setattr__(config, "cache_box", cache_box)
            return config

        def create_optimization_profile():
            return _Profile(self, {})

        def build_serialized_network(network, config):
            if id(network) not in self.parsed or self.fail_build:
                return None  # an empty network (no layers, no outputs) does not build: TensorRT logs and returns None
            cache = config.cache_box.get("cache")  # what was set on the config before this call
            if cache is not None:
                cache.box["timings"] += b"|timings"  # the build's measurements go into the cache set before it
            record = {"network_flags": state["network_flags"], "flags_set": sorted(state["flags_set"]),
                      "timing_cache_used": cache is not None,
                      "flags_cleared": sorted(state["flags_cleared"]), "workspace": state.get("workspace"),
                      "profiles": [p.shapes for p in state["profiles"]],
                      "config": {k: getattr(v, "name", v) for k, v in config._set.items()}}
            self.built.append(record)
            return b"TRTDOUBLE" + json.dumps(record, default=list).encode()

        return StrictObject("Builder", self, create_network=create_network,
                            create_builder_config=create_builder_config,
                            create_optimization_profile=create_optimization_profile,
                            build_serialized_network=build_serialized_network)

    def _parser(self, network, logger):
        _logger_arg(logger)
        if not (isinstance(network, StrictObject) and network._kind == "INetworkDefinition"):
            raise TypeError(f"OnnxParser(): expected an INetworkDefinition, got {type(network).__name__}")
        errors: list = []

        def parse_from_file(path):
            import onnx

            model = onnx.load(path, load_external_data=False)
            for node in model.graph.node:
                if node.op_type in self.reject_ops:
                    errors.append(StrictObject(
                        "ParserError", self, desc=lambda n=node: f"No importer registered for op: {n.op_type}",
                        node_name=lambda n=node: n.name, node_operator=lambda n=node: n.op_type,
                        node=lambda: -1, code=lambda: 8))
            if not errors:
                self.parsed.add(id(network))  # the layers go into the network the parser was made with
            return not errors

        return _Parser(self, parse_from_file, errors)

    def _runtime(self, logger):
        _logger_arg(logger)
        self.calls.append(("Runtime", "__init__", (), {}))
        holder: dict = {}

        def deserialize(data):
            data = bytes(data)
            if not data.startswith(b"TRTDOUBLE"):
                return None
            record = json.loads(data[len(b"TRTDOUBLE"):])
            if "VERSION_COMPATIBLE" in record["flags_set"] and not holder["runtime"]._set.get(
                    "engine_host_code_allowed"):
                return None  # a version-compatible plan embeds the lean runtime: host code must be allowed
            return _Engine(self, record)

        holder["runtime"] = StrictObject("Runtime", self, deserialize_cuda_engine=deserialize)
        return holder["runtime"]


class _Engine(StrictObject):
    """A deserialized double engine: ``input`` with the built profile, ``logits`` [N, CLASSES]."""

    def __init__(self, double: TensorRTDouble, record: dict) -> None:
        profile = [tuple(shape) for shape in record["profiles"][0]["input"]]
        modes = {"input": double.TensorIOMode.INPUT, "logits": double.TensorIOMode.OUTPUT}
        def profile_shape(name, index):
            _tensor(name, ("input",))
            if _typed(index, int, "profile index") != 0:  # TensorRT logs and returns nothing useful: stricter
                raise IndexError(f"the double engine has one optimization profile, not {index + 1}")
            return list(profile)

        def tensor_name(index):
            if not 0 <= _typed(index, int, "tensor index") < len(TENSORS):
                raise IndexError(f"the double engine has {len(TENSORS)} I/O tensors")
            return TENSORS[index]

        super().__init__(
            "ICudaEngine", double, num_io_tensors=2, get_tensor_name=tensor_name,
            get_tensor_mode=lambda name: modes[_tensor(name)], get_tensor_profile_shape=profile_shape,
            get_tensor_dtype=lambda name: _tensor(name) and double.DataType.FLOAT,
            create_execution_context=lambda: _Context(double, profile),
            create_engine_inspector=lambda: _Inspector(double, profile))


class _Context(StrictObject):
    """An execution context: shapes and addresses as bound; ``execute_async_v3`` computes from ``memory``."""

    def __init__(self, double: TensorRTDouble, profile: list[tuple[int, ...]]) -> None:
        shapes: dict[str, tuple[int, ...]] = {}
        addresses: dict[str, int] = {}

        def set_input_shape(name, shape):
            _tensor(name, ("input",))
            shape = tuple(_typed(d, int, "shape") for d in shape)
            if len(shape) != len(profile[0]) or any(not lo <= d <= hi for d, lo, hi in zip(shape, profile[0],
                                                                                           profile[2])):
                return False  # outside the profile: TensorRT refuses the shape
            shapes[name] = shape
            return True

        def set_tensor_address(name, address):
            addresses[_tensor(name)] = _typed(address, int, "address")
            return True

        def get_tensor_shape(name):
            return shapes[name] if _tensor(name) == "input" else (shapes["input"][0], CLASSES)

        def execute_async_v3(stream):
            double.calls.append(("IExecutionContext", "execute_async_v3", (id(self), stream), {}))
            if double.fail_execute:
                return False
            if stream not in double.streams:
                # Stricter than TensorRT, which would enqueue on another stream (0: the legacy default stream) that
                # the runner neither synchronises nor captures: the double only knows the device's own stream.
                return False
            if double.capturing:
                # During CUDA stream capture work is recorded, not run. TensorRT asks for one enqueue before
                # capture (its lazy initialisation may allocate, which capture forbids): model that as a failure.
                return id(self) in double.launched
            double.launched.add(id(self))
            x = double.memory[addresses["input"]]
            assert x.shape == shapes["input"], "input buffer and bound shape disagree"
            out = double.memory[addresses["logits"]]
            # TensorRT reads and writes the bound addresses as the engine's element type (FLOAT): a buffer of
            # another type would be misread without a word; the double refuses it.
            assert x.dtype == out.dtype == np.float32, "buffers are not of the engine's element type"
            out[...] = x.reshape(len(x), -1).mean(axis=1, keepdims=True) * np.arange(1, CLASSES + 1)
            return True

        super().__init__("IExecutionContext", double, set_input_shape=set_input_shape,
                         set_tensor_address=set_tensor_address, get_tensor_shape=get_tensor_shape,
                         execute_async_v3=execute_async_v3)
        object.__setattr__(self, "shapes", shapes)
        double.contexts.append(self)


class _Inspector(StrictObject):
    """Layer formats only with a context whose input shapes are all set; the layout of the double's major."""

    def __init__(self, double: TensorRTDouble, profile: list[tuple[int, ...]]) -> None:
        def get_engine_information(fmt):
            if not (isinstance(fmt, EnumValue) and fmt.enum == "LayerInformationFormat"):
                raise TypeError(f"get_engine_information(): expected a LayerInformationFormat, got {fmt!r}")
            if fmt.name != "JSON":
                return "conv: CaskConvolution\nsoftmax: SoftMax"  # ONELINE: not JSON
            context = self._set.get("execution_context")
            double.inspected.append(context.shapes.get("input") if context is not None else None)
            dynamic = profile[0] != profile[2]
            known = not dynamic or (context is not None and "input" in context.shapes)
            outputs = [("Channel major FP16 format", "Half"), ("Row major linear FP32", "Float")]
            layers = []
            for name, kind, (fmt_text, dtype) in (("conv", "CaskConvolution", outputs[0]),
                                                  ("softmax", "SoftMax", outputs[1])):
                if not known:
                    out = {"Format/Datatype": "N/A due to dynamic shapes"} if double.major == "10" else \
                        {"Format": "N/A due to dynamic shapes", "DataType": "N/A due to dynamic shapes"}
                elif double.major == "10":
                    out = {"Format/Datatype": fmt_text}
                else:
                    out = {"Format": fmt_text.replace(" FP16", "").replace(" FP32", ""), "DataType": dtype}
                layers.append({"Name": name, "LayerType": kind, "Outputs": [out]})
            return json.dumps({"Layers": layers})

        super().__init__("EngineInspector", double, get_engine_information=get_engine_information)


class FakeDevice:
    """A FAKE standing in for :class:`resnest_deploy.runners.cuda_device.CudaDevice` (no GPU here): buffers are
    host arrays registered in the double's ``memory`` by address; a captured "graph" relaunches what was captured
    through its context, so it sees that context's bindings at replay time, as a CUDA graph sees its context's
    state."""

    stream_handle = 7

    def __init__(self, double: TensorRTDouble) -> None:
        self.double = double
        self.captures = 0
        double.streams.add(self.stream_handle)

    def empty(self, shape, dtype):
        array = np.zeros(tuple(shape), dtype)
        self.double.memory[id(array)] = array
        return array

    def address(self, tensor):
        return id(tensor)

    def copy_in(self, tensor, array):
        source = np.ascontiguousarray(array)
        if source.dtype == object:  # CudaDevice's torch.from_numpy refuses it the same way
            raise TypeError("can't convert np.ndarray of type numpy.object_")
        tensor[...] = source

    def copy_out(self, tensor):
        return tensor.copy()

    def on_stream(self, fn):
        return fn()

    def capture(self, fn):
        """Stream capture: the launches ``fn`` makes are recorded (checked, not run); replaying runs them."""
        self.captures += 1
        self.double.capturing = True
        try:
            fn()
        finally:
            self.double.capturing = False
        return types.SimpleNamespace(replay=fn)

    def synchronize(self):
        pass


class _ClassProxy:
    """A TensorRT class: calling it makes an instance; class attributes (``Logger.WARNING``) are checked too."""

    def __init__(self, kind: str, double: TensorRTDouble, factory) -> None:
        self._kind, self._double, self._factory = kind, double, factory

    def __call__(self, *args, **kwargs):
        return self._factory(*args, **kwargs)

    def __getattr__(self, item: str):
        if item.startswith("_") or item not in self._double.surface.members(self._kind):
            raise AttributeError(f"tensorrt {self._double.version}: {self._kind} has no attribute {item!r}")
        return EnumValue(f"{self._kind}.Severity", item, 0)


class _Profile(StrictObject):
    def __init__(self, double: TensorRTDouble, shapes: dict) -> None:
        def set_shape(name, lo, opt, hi):
            shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

        super().__init__("IOptimizationProfile", double, set_shape=set_shape, get_shape=lambda n: shapes[n])
        object.__setattr__(self, "shapes", shapes)


class _Parser(StrictObject):
    def __init__(self, double: TensorRTDouble, parse_from_file, errors: list) -> None:
        super().__init__("OnnxParser", double, parse_from_file=parse_from_file, get_error=lambda i: errors[i])
        object.__setattr__(self, "_errors", errors)

    def __getattr__(self, item: str):
        if item == "num_errors":
            self._check(item)
            return len(self._errors)
        return super().__getattr__(item)


def install_double(monkeypatch, major: str, gpu, **kwargs) -> TensorRTDouble:
    """Put a double in place of ``tensorrt`` and fake a GPU (``gpu``, a GpuInfo) for the package's host checks:
    the device is "made current" by recording it in the double's calls, and the wheel fits the driver."""
    import sys

    from resnest_deploy.exporters import tensorrt_env

    double = TensorRTDouble(major, **kwargs)
    object.__setattr__(double, "gpu_cc", gpu.compute_capability)
    monkeypatch.setitem(sys.modules, "tensorrt", double)
    monkeypatch.setattr(tensorrt_env, "gpu_info", lambda index=0: type(gpu)(gpu.name, gpu.compute_capability,
                                                                            gpu.driver, index))
    monkeypatch.setattr(tensorrt_env, "use_device",
                        lambda index: double.calls.append(("cuda", "set_device", (index,), {})))
    monkeypatch.setattr(tensorrt_env, "installed_tensorrt", lambda: (double.version, 13))
    monkeypatch.setattr(tensorrt_env, "driver_cuda_major", lambda gpu: 13)
    return double
