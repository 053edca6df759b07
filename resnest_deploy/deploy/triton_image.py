"""The repository's image entry point: ``<arch>_preprocess`` (python backend, CPU) decodes and preprocesses encoded
images with the package's own :mod:`~resnest_deploy.calibration.pixels` (shipped beside the model, its SHA-256
recorded in the config and checked when the model loads), and the ensemble ``<arch>`` chains it to the CPU model:
``image`` bytes -> ``<arch>_preprocess`` -> ``<arch>_onnx`` -> ``logits`` (with the labels, so Triton's
classification extension returns top-k names).

The input settings come from the exported ONNX's manifest (its size, crop, filter and normalisation), so a run
made with ``--img-size`` serves what parity checked at that size. Instances and batching of the preprocessing
model were chosen by measurement (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from ..atomic import atomic_path, write_text_atomic
from resnest_deploy.calibration.images import settings_dict
from resnest_deploy.calibration.pixels import settings_to_strings
from resnest_deploy.models import InputConfig

from .triton import ModelEntry

MODEL_FILES = ("model.py", "pixels.py")
# Chosen by benchmarks/serve_preprocess.py on a 2-core host (docs/benchmarks.md has the numbers): decoding and
# resizing run image by image in one process per instance, so concurrent clients gain from a second instance, and
# dynamic batching's queue delay cost throughput and a lone client's latency. None: no dynamic batching (the CPU
# model after it in the ensemble batches on its own).
PREPROCESS_INSTANCES = 2
PREPROCESS_QUEUE_DELAY_US: int | None = None


def preprocess_model_name(arch: str) -> str:
    return f"{arch}_preprocess"


def ensemble_name(arch: str) -> str:
    return arch


def source_files() -> dict[str, Path]:
    """Repository file name -> the package file it is a copy of."""
    import importlib.util

    from resnest_deploy.calibration import pixels

    # Found, never imported: the model file imports Triton's python-backend utilities, which only the stub has.
    model = importlib.util.find_spec("resnest_deploy.serving.preprocess_model")
    return {"model.py": Path(model.origin), "pixels.py": Path(pixels.__file__)}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sources_key() -> dict[str, object]:
    """The hashes of the shipped files and the serving settings: part of the repository step's options, so a
    change to the preprocessing code or its instances rewrites the repository."""
    return {**{name: sha256_of(path) for name, path in source_files().items()},
            "instances": PREPROCESS_INSTANCES, "queue_delay_us": PREPROCESS_QUEUE_DELAY_US}


def _parameters(values: dict[str, str]) -> list[str]:
    return [f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in values.items()]


def render_preprocess_config(arch: str, cfg: InputConfig, onnx_entry: ModelEntry, pixels_sha256: str) -> str:
    """``config.pbtxt`` of ``<arch>_preprocess``: ``image`` (one encoded image per row) -> the CPU model's input."""
    target = onnx_entry.inputs[0]
    settings = {**settings_to_strings(settings_dict(cfg)), "pixels_sha256": pixels_sha256}
    lines = [f'name: "{preprocess_model_name(arch)}"', 'backend: "python"',
             f"max_batch_size: {onnx_entry.max_batch_size}",
             'input [ { name: "image" data_type: TYPE_STRING dims: [ 1 ] } ]',
             f'output [ {{ name: "{target.name}" data_type: {target.data_type} dims: [ 3, {cfg.size}, {cfg.size} ] }} ]',
             *([] if PREPROCESS_QUEUE_DELAY_US is None else
               [f"dynamic_batching {{ max_queue_delay_microseconds: {PREPROCESS_QUEUE_DELAY_US} }}"]),
             f"instance_group [ {{ kind: KIND_CPU count: {PREPROCESS_INSTANCES} }} ]", *_parameters(settings)]
    return "\n".join(lines) + "\n"


def render_ensemble_config(arch: str, onnx_entry: ModelEntry) -> str:
    """``config.pbtxt`` of the ensemble ``<arch>``: ``image`` -> preprocess -> the CPU model -> its first output."""
    model_input, output = onnx_entry.inputs[0], onnx_entry.outputs[0]
    dims = ", ".join(str(d) for d in output.dims)
    label = f' label_filename: "{onnx_entry.label_file}"' if onnx_entry.label_file else ""
    lines = [f'name: "{ensemble_name(arch)}"', 'platform: "ensemble"', f"max_batch_size: {onnx_entry.max_batch_size}",
             'input [ { name: "image" data_type: TYPE_STRING dims: [ 1 ] } ]',
             f'output [ {{ name: "{output.name}" data_type: {output.data_type} dims: [ {dims} ]{label} }} ]',
             "ensemble_scheduling {", "  step [",
             f'    {{ model_name: "{preprocess_model_name(arch)}" model_version: -1',
             '      input_map { key: "image" value: "image" }',
             f'      output_map {{ key: "{model_input.name}" value: "preprocessed" }} }},',
             f'    {{ model_name: "{onnx_entry.name}" model_version: -1',
             f'      input_map {{ key: "{model_input.name}" value: "preprocessed" }}',
             f'      output_map {{ key: "{output.name}" value: "{output.name}" }} }}',
             "  ]", "}"]
    return "\n".join(lines) + "\n"


def repository_files(arch: str) -> dict[str, set[str]]:
    """model folder -> the files its version folder holds (the stub's byte-code cache included)."""
    return {preprocess_model_name(arch): {*MODEL_FILES, "__pycache__"}, ensemble_name(arch): set()}


def write_image_models(root: Path, arch: str, cfg: InputConfig, onnx_entry: ModelEntry,
                       labels: list[str] | None) -> None:
    """Write (or refresh) ``<arch>_preprocess`` with its two files and the ensemble ``<arch>``."""
    sources = source_files()
    folder = root / preprocess_model_name(arch)
    for name, source in sources.items():  # copies, never links: an edit in the repository must not reach the package
        with atomic_path(folder / "1" / name) as tmp:
            shutil.copyfile(source, tmp)
    write_text_atomic(folder / "config.pbtxt",
                      render_preprocess_config(arch, cfg, onnx_entry, sha256_of(sources["pixels.py"])))
    ensemble = root / ensemble_name(arch)
    (ensemble / "1").mkdir(parents=True, exist_ok=True)  # Triton wants a version folder, empty for an ensemble
    write_text_atomic(ensemble / "config.pbtxt", render_ensemble_config(arch, onnx_entry))
    if labels:
        write_text_atomic(ensemble / "labels.txt", "\n".join(labels) + "\n")
