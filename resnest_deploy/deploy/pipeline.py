"""``resnest-deploy deploy``: every option checked once, then the run's steps (:mod:`.workflow`), each skipped when
its record still matches (:mod:`.state`), with a row per step for the final table.

Steps run in order; a parity that fails is recorded as ``failed`` and the run goes on (exit 1 at the end); a step
that raises (bad input, unwritable output) stops the run, keeping every step finished before it. Options are
checked by the validators of the commands the steps call, on the very options the steps will run with, before
any step runs; the calibration images are chosen once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError, ConfigError, check_minimums
from ..kinds import ArtifactKind, Precision
from ..paths import existing_file
from ..progress import ProgressFn
from . import actions
from .host import Host, detect_host
from .options import CPU_MODELS, DeployOptions
from .state import RunState
from .steps import StepResult, dry_run, run_steps
from .targets import Target, any_gpu_target, host_target, load_targets
from .workflow import RunLayout, Workflow


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


@dataclass(frozen=True)
class Settled:
    """What validation settled for the run: its options (precisions as enums), the calibration images chosen once,
    and the parity folder's file-list hash."""

    options: DeployOptions
    calibration: object | None
    data_key: str | None


def validate(options: DeployOptions) -> Settled:
    """Every option checked before any step runs, by the validators of the commands the steps call.

    Raises:
        UnknownArchError, ConfigError, CheckpointError: The first bad option.
    """
    from resnest_deploy.calibration.options import validate_options as validate_quantize
    from resnest_deploy.exporters.options import validate_export
    from resnest_deploy.exporters.tensorrt_options import parse_batch
    from resnest_deploy.models import get_config

    get_config(options.arch)
    if not options.precisions:
        raise ConfigError(f"--precisions takes a comma-separated subset of {', '.join(Precision.values())}, "
                          "got nothing")
    precisions = tuple(dict.fromkeys(Precision.parse(p, "--precisions") for p in options.precisions))
    cpu_model = Precision.parse(options.cpu_model, "--cpu-model")
    if cpu_model not in CPU_MODELS:
        raise ConfigError(f"--cpu-model takes {' or '.join(map(str, CPU_MODELS))}, got {options.cpu_model!r}")
    o = _replace(options, precisions=precisions, cpu_model=cpu_model)
    int8 = Precision.int8 in precisions or cpu_model == Precision.int8
    if int8 and not o.calib_data:
        raise ConfigError("INT8 needs --calib-data: a folder or list file of representative images ('synthetic' "
                          "only checks the pipeline); or leave int8 out of --precisions and --cpu-model")
    parse_batch(o.batch)
    check_minimums(("--calib-size", o.calib_size, 1))
    if o.weights is not None:
        existing_file(o.weights, CheckpointError, "checkpoint file")
    layout = RunLayout(o.run_dir, o.arch)
    fp32 = layout.onnx(ArtifactKind.fp32)
    validate_export(actions.export_options(o, fp32))
    calibration = _calibration(o) if int8 else None
    for kind in o.kinds:
        if kind is not ArtifactKind.fp32:
            validate_quantize(actions.quantize_options(fp32, layout.onnx(kind), kind, o, calibration))
        _validate_parity(o, layout.onnx(kind))
    _validate_bench([layout.onnx(k) for k in o.kinds], o)
    return Settled(o, calibration, _data_key(o))


def _replace(options: DeployOptions, **changes: object) -> DeployOptions:
    from dataclasses import replace

    return replace(options, **changes)


def _calibration(o: DeployOptions):
    from resnest_deploy.calibration.dataset import check_usable

    return check_usable(o.calib_data, o.calib_size, o.seed)


def _validate_parity(o: DeployOptions, artifact: Path) -> None:
    from resnest_deploy.parity.options import validate_options

    validate_options(actions.parity_options(artifact, o, 8))


def _validate_bench(artifacts: list[Path], o: DeployOptions) -> None:
    from resnest_deploy.bench.options import validate_options

    validate_options(actions.bench_options(artifacts, o, ("eager", "ort")))


def _data_key(o: DeployOptions) -> str | None:
    """The parity folder's file-list hash, after checking one of the images parity will pick decodes."""
    if o.data is None:
        return None
    from resnest_deploy.calibration.dataset import check_usable, file_list_key
    from resnest_deploy.calibration.images import find_images
    from resnest_deploy.models import get_config

    check_usable(o.data, o.samples, o.seed)
    return file_list_key(find_images(o.data).files, get_config(o.arch).input)


def resolve_targets(options: DeployOptions, host: Host) -> list[Target]:
    """The targets file's targets; without one, this host's GPU, else one bundle for the GPU host that runs it."""
    precisions = tuple(Precision(p).value for p in options.precisions)
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
    settled = validate(options)
    options = settled.options
    host = detect_host()
    targets = resolve_targets(options, host)
    steps = Workflow(options, targets, host, settled.calibration, settled.data_key).build()
    state = RunState.load(options.run_dir)
    if options.dry_run:
        return DeployResult(options.run_dir, dry_run(steps, state, force=options.force), True, targets)
    results = run_steps(steps, state, force=options.force, progress=progress)
    return DeployResult(options.run_dir, results, False, targets)
