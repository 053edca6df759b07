"""``resnest-deploy classify``: send image files to a running Triton and read back top-k classes, or, from the
preprocessing model, the input tensor, compared with what this package computes from the same file.

The client is tritonclient's gRPC client (the ``[serve]`` extra). The image entry point is the ensemble
``<arch>``; when it is not ready the client chains ``<arch>_preprocess`` and ``<arch>_onnx`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..runners.triton_runner import connect, first_line
from .server import ServeError

# Served and local preprocessing run the same code on the same bytes; what may differ is numpy's float32
# arithmetic between the stub's numpy 1.26 and this environment's.
TENSOR_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Classified:
    """One file's answer: top-k (score, class index, label) or the preprocessed tensor and its difference from
    the package's own preprocessing; or the server's error."""

    path: Path
    top: list[tuple[float, int, str]] | None = None
    tensor: np.ndarray | None = None
    difference: float | None = None
    error: str | None = None

    @property
    def matches(self) -> bool:
        """For a served tensor: within :data:`TENSOR_TOLERANCE` of the package's preprocessing."""
        return self.difference is not None and self.difference <= TENSOR_TOLERANCE


def _ready(client, name: str) -> bool:
    try:
        return bool(client.is_model_ready(name))
    except Exception:  # an unknown model name is an exception in tritonclient
        return False


def choose_route(client, model: str | None) -> list[str]:
    """The models one image goes through: the named one, else the ready ensemble, else preprocess + CPU model.

    Raises:
        ServeError: Nothing on the server can classify an image (one line saying what is there).
    """
    if model:
        if not _ready(client, model):
            raise ServeError(f"model {model!r} is not ready on this server")
        first = client.get_model_config(model, as_json=True)["config"]["input"][0]
        if first.get("data_type") != "TYPE_STRING":
            raise ServeError(f"model {model!r} takes a preprocessed tensor, not an image file: name the ensemble "
                             "<arch> or <arch>_preprocess")
        return [model]
    index = client.get_model_repository_index(as_json=True).get("models", [])
    names = {m["name"] for m in index}
    for name in sorted(n for n in names if f"{n}_preprocess" in names):
        if _ready(client, name):
            return [name]
        if _ready(client, f"{name}_preprocess") and _ready(client, f"{name}_onnx"):
            return [f"{name}_preprocess", f"{name}_onnx"]
    ready = sorted(n for n in names if _ready(client, n))
    raise ServeError("no model on this server classifies an image (ready: "
                     f"{', '.join(ready) or 'none'}); --model <arch>_preprocess checks the served preprocessing")


def _is_preprocess(client, model: str) -> bool:
    """A model that answers an image with a tensor (the python-backend preprocessing), not with classes."""
    return client.get_model_config(model, as_json=True)["config"].get("backend") == "python"


def _infer(client, model: str, name: str, value: np.ndarray, kind: str, class_count: int = 0):
    import tritonclient.grpc as grpcclient

    config = client.get_model_config(model, as_json=True)["config"]
    tensor = grpcclient.InferInput(name, list(value.shape), kind)
    tensor.set_data_from_numpy(value)
    outputs = [grpcclient.InferRequestedOutput(o["name"], class_count=class_count) for o in config["output"]]
    return client.infer(model, [tensor], outputs=outputs), config


def classify_file(client, route: list[str], path: Path, top: int) -> Classified:
    """Send one file's bytes along ``route``."""
    from tritonclient.utils import InferenceServerException

    data = np.array([[path.read_bytes()]], dtype=object)
    try:
        tensor_out = len(route) == 2 or _is_preprocess(client, route[0])
        result, config = _infer(client, route[0], "image", data, "BYTES", 0 if tensor_out else top)
        if len(route) == 1 and tensor_out:
            return _compare_tensor(path, result.as_numpy(config["output"][0]["name"])[0], config)
        if len(route) == 2:
            tensor = result.as_numpy(config["output"][0]["name"])
            next_config = client.get_model_config(route[1], as_json=True)["config"]
            result, config = _infer(client, route[1], next_config["input"][0]["name"], tensor,
                                    next_config["input"][0]["data_type"].removeprefix("TYPE_"), top)
    except InferenceServerException as exc:
        return Classified(path, error=(exc.message() or first_line(exc)).strip())
    return Classified(path, top=_top(result.as_numpy(config["output"][0]["name"])[0], top))


def _top(entries: np.ndarray, k: int) -> list[tuple[float, int, str]]:
    """Triton's classification extension: ``score:index[:label]`` strings, best first."""
    found = []
    for entry in entries.reshape(-1)[:k]:
        score, index, *label = (entry.decode() if isinstance(entry, bytes) else str(entry)).split(":", 2)
        found.append((float(score), int(index), label[0] if label else ""))
    return found


def _compare_tensor(path: Path, served: np.ndarray, config: dict) -> Classified:
    """The served preprocessing against this package's on the same file, with the settings the model serves."""
    from resnest_deploy.calibration.pixels import ImageReadError, preprocess_bytes, settings_from_strings

    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    try:
        local = preprocess_bytes(path.read_bytes(), settings_from_strings(params))
    except ImageReadError as exc:
        return Classified(path, tensor=served, error=f"the package cannot read it either: {exc}")
    except (KeyError, ValueError):
        return Classified(path, tensor=served, error="the model's config carries no preprocessing settings")
    difference = float(np.abs(served.astype(np.float64) - local).max()) if served.shape == local.shape else np.inf
    return Classified(path, tensor=served, difference=difference)


def classify(url: str, files: list[Path], *, model: str | None = None, top: int = 5,
             timeout: float = 10.0) -> tuple[list[str], list[Classified]]:
    """Every file through the chosen route; returns (route, answers).

    Raises:
        ConfigError: A file that is not there (before anything is sent), or no live server at ``url``.
        ServeError: Nothing on the server can classify an image.
    """
    for path in files:
        if not path.is_file():
            raise ConfigError(f"{path}: no such image file")
    client = connect(url, timeout)
    try:
        route = choose_route(client, model)
        return route, [classify_file(client, route, path, top) for path in files]
    finally:
        client.close()
