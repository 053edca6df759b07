"""``resnest-deploy deploy``: export -> FP16/INT8 -> parity of each against eager -> latency -> per target: build,
parity and latency on this host when it is that target, otherwise a build bundle -> Triton model repository ->
one report page. Each step records what it consumed (:mod:`resnest_deploy.deploy.state`); a rerun skips every
step whose inputs, options and outputs are unchanged.

Steps run in order; a parity that fails is recorded as ``failed`` and the run goes on (exit 1 at the end); a
step that raises (bad input, unwritable output) stops the run, keeping every step finished before it. The plan is
built without loading torch, so a rerun with nothing to do is quick.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import interrupts
from ..errors import ConfigError, check_minimums
from ..hashing import record_sha256
from ..paths import existing_file
from .options import CPU_MODELS, PRECISIONS, DeployOptions
from .state import RunState
from .targets import Target, any_gpu_target, host_target, load_targets

ProgressFn = Callable[[str, int, int], None]


@dataclass
class Step:
    """One unit of work: the files it reads and writes, what else shapes its output, and how to do it.

    ``action`` returns None when the step succeeded, or a note when it ran but its check failed (parity).
    """

    name: str
    inputs: list[Path]
    options: dict[str, Any]
    outputs: list[Path]
    action: Callable[[], str | None]
    after: tuple[str, ...] = ()


@dataclass
class StepResult:
    """A row of the final table."""

    name: str
    status: str  # ran, up to date, failed, would run
    seconds: float
    output: str
    reason: str


@dataclass
class DeployResult:
    """Every step's row, and the targets the run served."""

    run_dir: Path
    steps: list[StepResult]
    dry_run: bool
    targets: list[Target] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(s.status == "failed" for s in self.steps)


@dataclass
class _Host:
    """This machine's GPU, found without torch when there is none."""

    compute_capability: str | None
    tensorrt: str | None


def _host() -> _Host:
    smi = shutil.which("nvidia-smi")
    if not smi or subprocess.run([smi, "-L"], capture_output=True).returncode != 0:
        return _Host(None, None)
    from ..exporters.tensorrt_env import gpu_info, installed_tensorrt

    gpu = gpu_info(0)
    installed = installed_tensorrt()
    return _Host(gpu.compute_capability if gpu else None, installed[0] if installed else None)


def validate(options: DeployOptions) -> None:
    """Every option checked before any step runs.

    Raises:
        UnknownArchError, ConfigError, CheckpointError: The first bad option.
    """
    from ..calibration.dataset import check_usable
    from ..exporters.options import MAX_IMG_SIZE, MIN_IMG_SIZE
    from ..exporters.tensorrt_plan import parse_batch
    from ..models import get_config

    get_config(options.arch)
    if options.img_size is not None and not MIN_IMG_SIZE <= options.img_size <= MAX_IMG_SIZE:
        raise ConfigError(f"--img-size must be {MIN_IMG_SIZE}..{MAX_IMG_SIZE}, got {options.img_size}")
    if not options.precisions or any(p not in PRECISIONS for p in options.precisions):
        raise ConfigError(f"--precisions takes a comma-separated subset of {', '.join(PRECISIONS)}, "
                          f"got {','.join(options.precisions) or 'nothing'}")
    if options.cpu_model not in CPU_MODELS:
        raise ConfigError(f"--cpu-model takes {' or '.join(CPU_MODELS)}, got {options.cpu_model!r}")
    int8 = "int8" in options.precisions or options.cpu_model == "int8"
    if int8 and not options.calib_data:
        raise ConfigError("INT8 needs --calib-data: a folder or list file of representative images ('synthetic' "
                          "only checks the pipeline); or leave int8 out of --precisions and --cpu-model")
    if options.calib_data and int8:
        check_usable(options.calib_data, options.calib_size, options.seed)
    parse_batch(options.batch)
    check_minimums(("--calib-size", options.calib_size, 1), ("--samples", options.samples, 1),
                   ("--iters", options.iters, 1), ("--seed", options.seed, 0))
    if not options.bench_batches or min(options.bench_batches) < 1:
        raise ConfigError("--bench-batch takes batch sizes >= 1")
    if options.weights is not None:
        from ..errors import CheckpointError

        existing_file(options.weights, CheckpointError, "checkpoint file")
    if options.data is not None:
        if not Path(options.data).is_dir():
            raise ConfigError(f"--data {options.data}: not a folder of images")
        check_usable(options.data, options.samples, options.seed)


class _Plan:
    """The steps of one run, and the paths they share."""

    def __init__(self, options: DeployOptions, targets: list[Target], host: _Host) -> None:
        self.o = options
        self.run = options.run_dir
        self.targets = targets
        self.host = host
        arch = options.arch
        self.checked = [*options.precisions, *(["int8-cpu"] if options.cpu_model == "int8" else [])]
        self.onnx = {p: self.run / "onnx" / (f"{arch}.onnx" if p == "fp32" else f"{arch}.{p}.onnx")
                     for p in ("fp32", *self.checked)}
        self.cpu_onnx = self.onnx["int8-cpu" if options.cpu_model == "int8" else "fp32"]
        self.reports = self.run / "reports"
        self.repository = self.run / "model_repository"
        self.steps: list[Step] = []

    # -- helpers -------------------------------------------------------------------------------------------
    def manifest(self, path: Path) -> Path:
        return path.with_name(path.name + ".json")

    def weights(self) -> list[Path]:
        return [Path(self.o.weights)] if self.o.weights else []

    def is_local(self, target: Target) -> bool:
        """Whether this host is ``target`` (same compute capability and TensorRT major), so it builds here."""
        if not self.host.compute_capability or target.compute_capability != self.host.compute_capability:
            return False
        major = int(self.host.tensorrt.split(".")[0]) if self.host.tensorrt else None
        return major is not None and target.tensorrt_major in (None, major)

    def data_key(self) -> str | None:
        if self.o.data is None:
            return None
        from ..calibration.dataset import file_list_key
        from ..calibration.images import find_images
        from ..models import get_config

        return file_list_key(find_images(self.o.data).files, get_config(self.o.arch).input)

    def calib_key(self) -> str:
        if str(self.o.calib_data) == "synthetic":
            return record_sha256({"synthetic": self.o.calib_size, "seed": self.o.seed})
        from ..calibration.dataset import file_list_key, open_source, sample_images
        from ..models import get_config

        images, _ = sample_images(open_source(self.o.calib_data), self.o.calib_size, self.o.seed)
        return file_list_key(images.files, get_config(self.o.arch).input)

    # -- the steps ----------------------------------------------------------------------------------------
    def build(self) -> list[Step]:
        self._artifacts()
        self._parity()
        self._latency()
        for target in self.targets:
            if self.is_local(target):
                self._local_target(target)
            else:
                self._bundle(target)
        self._repository()
        self._report()
        return self.steps

    def _artifacts(self) -> None:
        o, fp32 = self.o, self.onnx["fp32"]
        self.steps.append(Step(
            "export", self.weights(), {"arch": o.arch, "seed": o.seed, "img_size": o.img_size},
            [fp32, self.manifest(fp32)],
            lambda: _export(o, fp32)))
        if "fp16" in o.precisions:
            out = self.onnx["fp16"]
            self.steps.append(Step("quantize fp16", [fp32], {}, [out, self.manifest(out)],
                                   lambda out=out: _quantize(fp32, out, "fp16", o), ("export",)))
        for name in ("int8", "int8-cpu"):
            if name in self.checked:
                out = self.onnx[name]
                self.steps.append(Step(
                    f"quantize {name}", [fp32], {"calib": self.calib_key(), "size": o.calib_size, "seed": o.seed},
                    [out, self.manifest(out)], lambda out=out, name=name: _quantize(fp32, out, name, o), ("export",)))

    def _parity(self) -> None:
        data = self.data_key()
        for precision in self.checked:
            artifact = self.onnx[precision]
            report = self.reports / f"{self.o.arch}.{precision}.parity.json"
            upstream = "export" if precision == "fp32" else f"quantize {precision}"
            self.steps.append(Step(
                f"parity {precision}", [artifact, *self.weights()],
                {"data": data, "samples": self.o.samples, "seed": self.o.seed},
                [report, report.with_suffix(".md")],
                lambda a=artifact, r=report: _parity(a, r, self.o, batch=8), (upstream,)))

    def _latency(self) -> None:
        artifacts = [self.onnx[p] for p in self.checked]
        report = self.reports / f"{self.o.arch}.cpu.bench.json"
        self.steps.append(Step(
            "latency cpu", artifacts, {"batches": list(self.o.bench_batches), "iters": self.o.iters},
            [report, report.with_suffix(".md")],
            lambda: _bench(artifacts, report, self.o, ("eager", "ort")),
            tuple(s.name for s in self.steps if s.name.startswith(("export", "quantize")))))

    def _local_target(self, target: Target) -> None:
        engines = []
        for precision in target.precisions:
            from .triton import plan_model_name

            plan = self.repository / plan_model_name(self.o.arch, precision) / "1" / target.plan_name()
            engines.append(plan)
            upstream = "export" if precision == "fp32" else f"quantize {precision}"
            self.steps.append(Step(
                f"build {target.name} {precision}", [self.onnx[precision]], target.to_dict(),
                [plan, self.manifest(plan)], lambda t=target, p=precision, e=plan: _build(self.onnx[p], e, t),
                (upstream,)))
            report = self.reports / f"{self.o.arch}.{target.name}.{precision}.parity.json"
            self.steps.append(Step(
                f"parity {target.name} {precision}", [plan, *self.weights()],
                {"data": self.data_key(), "samples": self.o.samples}, [report, report.with_suffix(".md")],
                lambda e=plan, r=report, t=target: _parity(e, r, self.o, batch=t.profile[1]),
                (f"build {target.name} {precision}",)))
        report = self.reports / f"{self.o.arch}.{target.name}.bench.json"
        self.steps.append(Step(
            f"latency {target.name}", engines, {"batches": list(self.o.bench_batches), "iters": self.o.iters},
            [report, report.with_suffix(".md")],
            lambda engines=engines, report=report: _bench(engines, report, self.o, ("eager", "trt")),
            tuple(f"build {target.name} {p}" for p in target.precisions)))

    def _bundle(self, target: Target) -> None:
        folder = self.run / "targets" / target.name
        onnx_files = {p: self.onnx[p] for p in target.precisions}
        upstream = tuple("export" if p == "fp32" else f"quantize {p}" for p in target.precisions)
        self.steps.append(Step(
            f"bundle {target.name}", list(onnx_files.values()), target.to_dict(),
            [folder / "build.sh", folder / "target.json", *(folder / "onnx" / f.name for f in onnx_files.values())],
            lambda folder=folder, target=target, onnx_files=onnx_files: _bundle(folder, target, self.o.arch,
                                                                                onnx_files),
            tuple(dict.fromkeys(upstream))))

    def _repository(self) -> None:
        fp32 = self.onnx["fp32"]
        root = self.repository
        from .triton import onnx_model_name, plan_model_name

        configs = [root / onnx_model_name(self.o.arch) / "config.pbtxt", root / onnx_model_name(self.o.arch) / "1" /
                   "model.onnx"]
        configs += [root / plan_model_name(self.o.arch, p) / "config.pbtxt"
                    for p in sorted({p for t in self.targets for p in t.precisions})]
        self.steps.append(Step(
            "triton repository", [fp32, self.cpu_onnx],
            {"targets": [t.to_dict() for t in self.targets], "data": self.data_key()}, configs,
            lambda: _repository(root, self.o, fp32, self.cpu_onnx, self.targets),
            tuple(dict.fromkeys(("export", *(["quantize int8-cpu"] if self.o.cpu_model == "int8" else []))))))

    def _report(self) -> None:
        inputs = [p for s in self.steps for p in s.outputs if p.suffix == ".json" and "reports" in p.parts]
        out = self.run / "report.html"
        self.steps.append(Step(
            "report", inputs, {"targets": [t.to_dict() for t in self.targets],
                               "local": [t.name for t in self.targets if self.is_local(t)]},
            [out, out.with_suffix(".md")], lambda: _report(self.run, self.targets, self),
            tuple(s.name for s in self.steps)))


# ----------------------------------------------------------------------------------------------- actions

def _export(o: DeployOptions, out: Path) -> None:
    from ..exporters.onnx_export import export_onnx
    from ..exporters.options import ExportOptions

    export_onnx(ExportOptions(arch=o.arch, weights=o.weights, output=out, seed=o.seed, img_size=o.img_size))


def _quantize(fp32: Path, out: Path, name: str, o: DeployOptions) -> None:
    """``name``: fp16, int8 (for TensorRT) or int8-cpu (for ONNX Runtime's CPU kernels)."""
    from ..calibration.quantize import QuantizeOptions, quantize_onnx

    precision, _, target = name.partition("-")
    calib = o.calib_data if precision == "int8" else None
    quantize_onnx(QuantizeOptions(model=fp32, precision=precision, output=out, calib_data=calib,
                                  calib_size=o.calib_size, seed=o.seed, target=target or "tensorrt"))


def _parity(artifact: Path, report: Path, o: DeployOptions, *, batch: int) -> str | None:
    from ..parity.engine import run_parity
    from ..parity.options import ParityOptions
    from ..parity.report import write_reports

    result = run_parity(ParityOptions(artifact=artifact, weights=o.weights, data=o.data, samples=o.samples,
                                      batch=batch, seed=o.seed))
    write_reports(result, report)
    if result.passed:
        return None
    failed = [f"{v.name} {v.detail}" for v in result.verdicts if not v.passed]
    return f"parity failed ({result.judgement.preset if result.judgement else result.precision}): {failed[0]}"


def _bench(artifacts: list[Path], report: Path, o: DeployOptions, backends: tuple[str, ...]) -> None:
    from ..bench.harness import run_bench, write_reports
    from ..bench.options import BenchOptions

    result = run_bench(BenchOptions(artifacts=tuple(artifacts), weights=o.weights, backends=backends,
                                    batches=o.bench_batches, iters=o.iters, warmup=2, seed=o.seed))
    write_reports(result, report)


def _build(onnx_path: Path, engine: Path, target: Target) -> None:
    from ..exporters.tensorrt_builder import build_engine
    from ..exporters.tensorrt_plan import BuildOptions

    build_engine(BuildOptions(model=onnx_path, batch=target.batch, workspace_gib=target.workspace_gib,
                              hardware_compat=target.hardware_compat, output=engine,
                              timing_cache=engine.parents[3] / "timing.cache"))


def _bundle(folder: Path, target: Target, arch: str, onnx_files: dict[str, Path]) -> None:
    from ..exporters.graph import load_onnx
    from ..exporters.metadata import read_metadata
    from .bundle import write_bundle

    meta = read_metadata(load_onnx(onnx_files[target.precisions[0]], load_external_data=False))
    write_bundle(folder, target, arch, onnx_files, meta)


def labels_from(data: Path | None, num_classes: int) -> list[str] | None:
    """Class names for Triton: the class folders of ``data`` when there are as many as the model's classes."""
    if data is None:
        return None
    from ..calibration.images import find_images

    images = find_images(data)
    return list(images.classes) if len(images.classes) == num_classes else None


def _repository(root: Path, o: DeployOptions, fp32: Path, cpu_onnx: Path, targets: list[Target]) -> None:
    from ..exporters.graph import load_onnx
    from ..exporters.metadata import read_metadata
    from .triton import write_repository

    meta = read_metadata(load_onnx(fp32, load_external_data=False))
    write_repository(root, o.arch, cpu_onnx, targets, labels=labels_from(o.data, meta.num_classes if meta else 0))


def _report(run: Path, targets: list[Target], plan: _Plan) -> None:
    from ..reports.page import build_report
    from .sections import repository_section, target_sections

    build_report(run, run / "report.html", extra=[*target_sections(targets, plan),
                                                      repository_section(plan.repository, plan.o.cpu_model)])


# ----------------------------------------------------------------------------------------------- running

def resolve_targets(options: DeployOptions, host: _Host) -> list[Target]:
    """The targets file's targets; without one, this host's GPU, else one bundle for the GPU host that runs it."""
    precisions = tuple(options.precisions)
    if options.targets is not None:
        return load_targets(options.targets, precisions=precisions, batch=options.batch)
    if host.compute_capability:
        return [host_target(host.compute_capability, host.tensorrt, precisions, options.batch)]
    return [any_gpu_target(precisions, options.batch)]


def run_deploy(options: DeployOptions, *, progress: ProgressFn | None = None) -> DeployResult:
    """Run (or, with ``dry_run``, plan) the deployment; see the module docstring.

    Raises:
        ResnestDeployError: Bad options or targets (before anything runs), or a step's error (the run stops;
            finished steps stay recorded).
    """
    validate(options)
    host = _host()
    targets = resolve_targets(options, host)
    plan = _Plan(options, targets, host)
    steps = plan.build()
    state = RunState.load(options.run_dir)
    if options.dry_run:
        return DeployResult(options.run_dir, _dry_run(steps, state, options.force), True, targets)
    results: list[StepResult] = []
    reran: set[str] = set()
    for index, step in enumerate(steps):
        if progress:
            progress(step.name, index, len(steps))
        decision = state.decide(step.name, step.inputs, step.options, step.outputs, options.force)
        output = _shown(step, options.run_dir)
        if not decision.run:
            status = "failed" if state.steps[step.name].get("status") == "failed" else "up to date"
            results.append(StepResult(step.name, status, 0.0, output, state.steps[step.name].get("note") or ""))
            continue
        state.forget(step.name)  # until it finishes, the step is not done (an interrupt leaves it to rerun)
        started = time.perf_counter()
        with interrupts.stage(step.name):
            note = step.action()
        seconds = time.perf_counter() - started
        status = "failed" if note else "ran"
        state.record(step.name, step.inputs, step.options, step.outputs, status=status, seconds=seconds,
                     note=note or "")
        reran.add(step.name)
        results.append(StepResult(step.name, status, seconds, output, note or decision.reason))
    if progress:
        progress("done", len(steps), len(steps))
    return DeployResult(options.run_dir, results, False, targets)


def _dry_run(steps: list[Step], state: RunState, force: bool) -> list[StepResult]:
    """Each step: whether it would run, and why (its own inputs, or an upstream step that reruns)."""
    rows: list[StepResult] = []
    running: set[str] = set()
    for step in steps:
        decision = state.decide(step.name, step.inputs, step.options, step.outputs, force)
        upstream = [name for name in step.after if name in running]
        if decision.run or upstream:
            running.add(step.name)
            reason = decision.reason if decision.run else f"after {upstream[0]} reruns (its output may change)"
            rows.append(StepResult(step.name, "would run", 0.0, _shown(step, state.path.parent), reason))
        else:
            rows.append(StepResult(step.name, "up to date", 0.0, _shown(step, state.path.parent),
                                   "inputs, options and outputs unchanged"))
    return rows


def _shown(step: Step, run_dir: Path) -> str:
    """A step's main output, relative to the run folder."""
    if not step.outputs:
        return ""
    try:
        return str(step.outputs[0].relative_to(run_dir))
    except ValueError:
        return str(step.outputs[0])
