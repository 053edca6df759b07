"""A model served by a running Triton, as a runner: encoded image files in (``image``, one per batch row), the
served model's first output back. Parity's ``--triton`` compares it with eager on the same files, so the served
preprocessing is part of what is checked.

The client is tritonclient's gRPC client (the ``[serve]`` extra), imported when the runner starts.
"""

from __future__ import annotations

import numpy as np

from ..errors import ArtifactError, ConfigError, VerificationError
from .base import Runner, TensorSpec


def first_line(exc: BaseException) -> str:
    """An exception's first line (grpc's messages run over several), or its type."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def connect(url: str, timeout: float):
    """A gRPC client of the live Triton server at ``url`` (HOST:PORT).

    Raises:
        ConfigError: The Triton client is not installed, nothing answers at ``url``, or the server is not live.
    """
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        raise ConfigError("the Triton client is not installed: pip install 'resnest-deploy[serve]'") from None
    try:
        client = grpcclient.InferenceServerClient(url)
        live = client.is_server_live(client_timeout=timeout)
    except Exception as exc:  # grpc's own errors for a refused, unknown or malformed address
        raise ConfigError(f"no Triton server at {url}: {first_line(exc)}") from None
    if not live:
        raise ConfigError(f"the Triton server at {url} is not live")
    return client


class TritonRunner(Runner):
    """``url`` (HOST:PORT of the gRPC endpoint) and the served ``model`` (an ensemble taking encoded images)."""

    def __init__(self, url: str, model: str, timeout: float = 10.0) -> None:
        self.url, self.model, self.timeout = url, model, timeout
        self.name = f"triton[{model}@{url}]"
        self._client = None
        self._input = "image"
        self._output = ""
        self._max_batch = 1

    def activate(self) -> None:
        client = connect(self.url, self.timeout)
        try:
            ready = client.is_model_ready(self.model, client_timeout=self.timeout)
            config = client.get_model_config(self.model, as_json=True, client_timeout=self.timeout)["config"] \
                if ready else None
        except Exception as exc:  # grpc's own errors (the server went away, an unknown model name)
            client.close()
            raise ConfigError(f"--triton {self.url}: {first_line(exc)}") from None
        if not ready:
            client.close()
            raise ConfigError(f"--triton {self.url}: model {self.model!r} is not ready on that server "
                              "(`resnest-deploy serve` lists every model's state)")
        first = config["input"][0]
        if first.get("data_type") != "TYPE_STRING":
            client.close()
            raise ConfigError(f"--triton: model {self.model!r} takes a preprocessed tensor, not encoded images; name "
                              "the ensemble <arch>")
        self._client, self._input, self._output = client, first["name"], config["output"][0]["name"]
        batch = int(config.get("max_batch_size") or 0)
        self._max_batch = batch if batch > 0 else 1  # the largest request the served model takes

    def deactivate(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec("image", np.dtype(object), (None, 1))]

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        if self._client is None:
            raise ArtifactError(f"{self.name} is not started (use it as a context manager)")
        parts = []
        for start in range(0, len(feed["image"]), self._max_batch):  # no request over the model's max_batch_size
            images = feed["image"][start:start + self._max_batch]
            tensor = grpcclient.InferInput(self._input, list(images.shape), "BYTES")
            tensor.set_data_from_numpy(images)
            try:
                result = self._client.infer(self.model, [tensor],
                                            outputs=[grpcclient.InferRequestedOutput(self._output)],
                                            client_timeout=max(self.timeout, 60.0))
            except InferenceServerException as exc:
                raise VerificationError(f"{self.name} refused images this tool reads: {exc.message()}") from None
            parts.append(result.as_numpy(self._output).astype(np.float32))
        return {"logits": np.concatenate(parts)}
