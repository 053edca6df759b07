"""What each deploy step does: one call into the library's command functions, with the options the run settled
(and validated) before any step ran."""

from __future__ import annotations

from pathlib import Path

from ..kinds import ArtifactKind
from .options import DeployOptions
from .steps import Outcome
from .targets import Target
from .triton import ModelEntry, plan_model_name


def export(o: DeployOptions, out: Path) -> None:
    from resnest_deploy.exporters.onnx_export import export_onnx

    export_onnx(export_options(o, out))


def export_options(o: DeployOptions, out: Path):
    from resnest_deploy.exporters.options import ExportOptions

    return ExportOptions(arch=o.arch, weights=o.weights, output=out, seed=o.seed, img_size=o.img_size)


def quantize(fp32: Path, out: Path, kind: ArtifactKind, o: DeployOptions, calibration) -> Outcome:
    """``kind``: fp16, int8 (for TensorRT) or int8-cpu (for ONNX Runtime's CPU kernels); ``calibration`` the
    images the run chose once (see :func:`~resnest_deploy.calibration.dataset.select_calibration`)."""
    from resnest_deploy.calibration.quantize import quantize_onnx

    return Outcome(warnings=tuple(quantize_onnx(quantize_options(fp32, out, kind, o, calibration)).warnings))


def quantize_options(fp32: Path, out: Path, kind: ArtifactKind, o: DeployOptions, calibration):
    from resnest_deploy.calibration.options import QuantizeOptions

    int8 = kind.precision == "int8"
    budget = {"accuracy_data": str(o.accuracy_data) if o.accuracy_data else None,
              "max_accuracy_drop": o.max_accuracy_drop, "min_agreement": o.min_agreement} if int8 else {}
    return QuantizeOptions(model=fp32, precision=kind.precision, output=out, calib_data=calibration if int8 else None,
                           calib_size=o.calib_size, seed=o.seed, target=kind.runtime, **budget)


def budget_key(o: DeployOptions) -> dict[str, object]:
    """What an INT8 step's accuracy budget depends on: the limit and the accuracy images (file list, sizes, times)."""
    if o.max_accuracy_drop is None and o.min_agreement is None:
        return {}
    from resnest_deploy.calibration.dataset import file_list_key
    from resnest_deploy.calibration.images import find_images
    from resnest_deploy.models import get_config

    assert o.accuracy_data is not None  # settled by pipeline.validate
    files = find_images(o.accuracy_data).files
    return {"budget": {"max_accuracy_drop": o.max_accuracy_drop, "min_agreement": o.min_agreement,
                       "data": file_list_key(files, get_config(o.arch).input)}}


def parity(artifact: Path, report: Path, o: DeployOptions, *, batch: int) -> Outcome:
    """Compare ``artifact`` with eager and write its reports; a failure note when it failed its limits."""
    from resnest_deploy.parity.engine import run_parity
    from resnest_deploy.parity.report import write_reports

    result = run_parity(parity_options(artifact, o, batch))
    write_reports(result, report)
    warnings = (f"skipped {len(result.skipped)} unreadable image(s) of {o.data}, e.g. "
                f"{Path(result.skipped[0][0]).name}: {result.skipped[0][1]}",) if result.skipped else ()
    if result.passed:
        return Outcome(warnings=warnings)
    failed = [f"{v.name} {v.detail}" for v in result.verdicts if not v.passed]
    preset = result.judgement.preset if result.judgement else result.precision
    return Outcome(f"parity failed ({preset}): {failed[0]}", warnings)


def parity_options(artifact: Path, o: DeployOptions, batch: int):
    from resnest_deploy.parity.options import ParityOptions

    return ParityOptions(artifact=artifact, weights=o.weights, data=o.data, samples=o.samples, batch=batch,
                         seed=o.seed)


def bench(artifacts: list[Path], report: Path, o: DeployOptions, backends: tuple[str, ...]) -> None:
    from resnest_deploy.bench.harness import run_bench, write_reports

    write_reports(run_bench(bench_options(artifacts, o, backends)), report)


def bench_options(artifacts: list[Path], o: DeployOptions, backends: tuple[str, ...]):
    from resnest_deploy.bench.options import BenchOptions

    return BenchOptions(artifacts=tuple(artifacts), weights=o.weights, backends=backends, batches=o.bench_batches,
                        iters=o.iters, warmup=o.warmup, seed=o.seed)


def build(onnx_path: Path, engine: Path, target: Target, timing_cache: Path) -> None:
    from resnest_deploy.exporters.tensorrt_builder import build_engine
    from resnest_deploy.exporters.tensorrt_options import BuildOptions

    build_engine(BuildOptions(model=onnx_path, batch=target.batch, workspace_gib=target.workspace_gib,
                              hardware_compat=target.hardware_compat, output=engine, timing_cache=timing_cache))


def bundle(folder: Path, target: Target, o: DeployOptions, onnx_files: dict[str, Path], fp32: Path,
           targets: list[Target]) -> None:
    """A target's build bundle: its ONNX files, the eager model's exact weights, its plan models' configs (as the
    repository holds them for every target, so whichever bundle installs a config, it names every plan)."""
    import tempfile

    from resnest_deploy.exporters.graph import load_onnx
    from resnest_deploy.exporters.metadata import read_metadata

    from .bundle import write_bundle

    meta = read_metadata(load_onnx(fp32, load_external_data=False))
    entries, labels = repository_contents(o, fp32, fp32, targets)
    wanted = {plan_model_name(o.arch, p) for p in target.precisions}
    models = [e for e in entries if e.gpu and e.name in wanted]
    with tempfile.TemporaryDirectory(prefix="resnest-deploy-weights-") as tmp:
        weights = Path(o.weights) if o.weights else _random_init_weights(o.arch, meta, Path(tmp))
        write_bundle(folder, target, o.arch, onnx_files, weights, models, labels)


def _random_init_weights(arch: str, meta, folder: Path) -> Path:
    """The random-init model the artifacts came from, its weights (BatchNorm statistics included) saved as
    safetensors: what parity on the GPU host compares with, whatever that host's torch does with a seed."""
    from safetensors.torch import save_file

    from resnest_deploy.models import create_model

    model = create_model(arch, num_classes=meta.num_classes, seed=meta.seed if meta.seed is not None else 0)
    path = folder / f"{arch}.random-init-seed{meta.seed}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def labels_from(data: Path | None, num_classes: int) -> list[str] | None:
    """Class names for Triton: the class folders of ``data`` when there are as many as the model's classes."""
    if data is None:
        return None
    from resnest_deploy.calibration.images import find_images

    images = find_images(data)
    return list(images.classes) if len(images.classes) == num_classes else None


def repository_contents(o: DeployOptions, fp32: Path, cpu_onnx: Path,
                        targets: list[Target]) -> tuple[list[ModelEntry], list[str] | None]:
    """The repository's models and labels as this run defines them (the record the repository step writes its
    files from and the report reads)."""
    entries, labels, _ = _contents(o, fp32, cpu_onnx, targets)
    return entries, labels


def _contents(o: DeployOptions, fp32: Path, cpu_onnx: Path, targets: list[Target]):
    """(entries, labels, the exported model's metadata): the graph's metadata is read once."""
    from resnest_deploy.exporters.graph import load_onnx
    from resnest_deploy.exporters.metadata import read_metadata

    from .triton import repository_entries

    meta = read_metadata(load_onnx(fp32, load_external_data=False))
    labels = labels_from(o.data, meta.num_classes if meta else 0)
    return repository_entries(o.arch, cpu_onnx, targets, labels=labels), labels, meta


def repository(root: Path, o: DeployOptions, fp32: Path, cpu_onnx: Path, targets: list[Target]) -> None:
    """The model configs, the CPU model's file, and the image entry point (preprocessing with the input settings
    the model was exported and checked at, and the ensemble)."""
    from .triton import write_repository
    from .triton_image import write_image_models

    entries, labels, meta = _contents(o, fp32, cpu_onnx, targets)
    write_repository(root, entries, cpu_onnx, labels=labels)
    if meta is not None:  # always, for deploy's own export; a graph without metadata has no settings to serve
        write_image_models(root, o.arch, meta.input, entries[0], labels)
