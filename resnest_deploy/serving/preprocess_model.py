"""The Triton python-backend model ``<arch>_preprocess`` (copied into the repository as ``1/model.py``, beside a copy
of :mod:`resnest_deploy.calibration.pixels`): encoded images in, the model's input tensor out, computed by the
same code calibration and parity ran, with the input settings the run's ONNX was exported and checked at (the
config's ``parameters``).

It runs inside Triton's python stub, not in this package: it imports only the standard library, numpy, Pillow,
Triton's ``triton_python_backend_utils`` and the ``pixels.py`` beside it. The stub embeds the host's libpython and
ignores ``PYTHONPATH``; ``resnest-deploy serve`` points ``RESNEST_DEPLOY_TRITON_PACKAGES`` at pinned numpy and
Pillow (:mod:`resnest_deploy.serving.python_env`), and a stock Triton container uses its own.

A request whose image cannot be decoded gets an error response naming the reason; other requests of the same
batch are answered and the model keeps serving.
"""

import hashlib
import json
import os
import sys

_PACKAGES = os.environ.get("RESNEST_DEPLOY_TRITON_PACKAGES")
if _PACKAGES and _PACKAGES not in sys.path:
    sys.path.insert(0, _PACKAGES)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

import pixels  # noqa: E402  (the copy beside this file, checked against the repository's recorded hash)

_HERE = os.path.dirname(os.path.abspath(__file__))


def _parameters(config: dict) -> dict[str, str]:
    return {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}


class TritonPythonModel:
    """``image`` (TYPE_STRING, one encoded image per batch row) -> the model's input tensor ``[3, S, S]``."""

    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = _parameters(config)
        with open(os.path.join(_HERE, "pixels.py"), "rb") as handle:
            actual = hashlib.sha256(handle.read()).hexdigest()
        if actual != params.get("pixels_sha256"):
            raise pb_utils.TritonModelException(
                f"pixels.py (sha256 {actual[:12]}) is not the preprocessing this repository recorded "
                f"({params.get('pixels_sha256', 'none')[:12]}): rewrite the repository with resnest-deploy deploy")
        self.settings = pixels.settings_from_strings(params)
        output = config["output"][0]
        self.output_name = output["name"]
        self.output_dtype = pb_utils.triton_string_to_numpy(output["data_type"])
        self.input_name = config["input"][0]["name"]

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy().reshape(-1)
            try:
                arrays = [pixels.preprocess_bytes(bytes(item), self.settings) for item in images]
            except pixels.ImageReadError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"not a usable image: {exc}")))
                continue
            tensor = np.stack(arrays).astype(self.output_dtype, copy=False)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, tensor)]))
        return responses
