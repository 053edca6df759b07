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

from ..errors import MAX_CALIB, CheckpointError, ConfigError, ResnestDeployError, check_minimums
from ..kinds import ArtifactKind, Precision
from ..paths import check_output, existing_file
from ..progress import ProgressFn
from . import actions
from .host import Host, detect_host
from .lock import run_lock
from .prune import leftovers, remove
from .options import CPU_MODELS, DeployOptions
from .state import RunState
from .steps import StepResult, dry_run, run_steps
from .summary import write_summary
from .targets import Target, any_gpu_target, host_target, load_targets
from .workflow import RunLayout, Workflow


@dataclass
class DeployResult:
    """Every step's row, and the targets the run served."""

    run_dir: Path
    steps: list[StepResult]
    dry_run: bool
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: Path | None = None

    @property
    def failed(self) -> bool:
        return any(s.status == "failed" for s in self.steps)


@dataclass(frozen=True)
class Settled:
    """What validation settled for the run: its options (precisions as enums), the calibration images chosen once,
    the parity folder's file-list hash, this host and the targets."""

    options: DeployOptions
    calibration: object | None
    data_key: str | None
    host: Host
    targets: list[Target]
    notes: tuple[str, ...] = ()


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
    if options.precisions is not None and not options.precisions:
        raise ConfigError(f"--precisions takes a comma-separated subset of {', '.join(Precision.values())}, "
                          "got nothing")
    chosen = options.precisions or (Precision.fp32, Precision.fp16, *((Precision.int8,) if options.calib_data else ()))
    precisions = tuple(dict.fromkeys(Precision.parse(p, "--precisions") for p in chosen))
    cpu_precision = Precision.parse(options.cpu_precision, "--cpu-precision")
    if cpu_precision not in CPU_MODELS:
        raise ConfigError(f"--cpu-precision takes {' or '.join(map(str, CPU_MODELS))}, got {options.cpu_precision!r}")
    o = _replace(options, precisions=precisions, cpu_precision=cpu_precision)
    int8 = Precision.int8 in precisions or cpu_precision == Precision.int8
    if int8 and not o.calib_data:
        raise ConfigError("INT8 needs --calib-data: a folder or list file of representative images ('synthetic' "
                          "only checks the pipeline); or leave int8 out of --precisions and --cpu-precision")
    o = _accuracy_data(o, int8)
    parse_batch(o.profile)
    check_minimums(("--calib-size", o.calib_size, 1, MAX_CALIB))
    check_output(o.run_dir, folder=True)
    host = detect_host()
    targets = resolve_targets(o, host)
    _check_targets(targets, precisions, o.targets)
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
    notes = () if options.precisions or o.calib_data else (
        "int8 left out: it needs calibration images; add --calib-data DIR (or --calib-data synthetic to check the "
        "pipeline on a random-init model)",)
    return Settled(o, calibration, _data_key(o), host, targets, notes)


def _check_targets(targets: list[Target], precisions: tuple[Precision, ...], source: Path | None) -> None:
    """Every target's precisions are among the run's (the run makes the ONNX files the targets build from).

    Raises:
        ConfigError: Naming the target, the precision and both places to fix it.
    """
    for target in targets:
        missing = [p for p in target.precisions if p not in precisions]
        if missing:
            raise ConfigError(f"{source}: target {target.name!r} builds {', '.join(missing)}, which --precisions "
                              f"{','.join(map(str, precisions))} leaves out; add it to --precisions or remove it "
                              "from the target")


def _replace(options: DeployOptions, **changes: object) -> DeployOptions:
    from dataclasses import replace

    return replace(options, **changes)


def _accuracy_data(o: DeployOptions, int8: bool) -> DeployOptions:
    """Settle the accuracy budget's images: ``--accuracy-data``, else ``--data`` when it can serve (labelled, for
    ``--max-accuracy-drop``).

    Raises:
        ConfigError: A budget without INT8, or without images to measure it on.
    """
    if o.max_accuracy_drop is None and o.min_agreement is None:
        if o.accuracy_data is not None:
            raise ConfigError("--accuracy-data goes with --max-accuracy-drop or --min-agreement")
        return o
    if not int8:
        raise ConfigError("an accuracy budget applies to INT8 graphs: add int8 to --precisions (or --cpu-precision "
                          "int8) and --calib-data")
    if o.accuracy_data is not None or o.data is None:
        if o.accuracy_data is None:
            raise ConfigError("an accuracy budget needs --accuracy-data DIR (or a labelled --data folder)")
        return o
    if o.max_accuracy_drop is not None:
        from resnest_deploy.calibration.images import SPLIT_NAMES, find_images

        images = find_images(o.data)
        if not images.is_class_tree or set(images.classes) <= SPLIT_NAMES:
            why = "not a class-per-subfolder tree" if not images.is_class_tree else "a dataset root split into " \
                + ", ".join(images.classes)
            raise ConfigError(f"--max-accuracy-drop needs labelled images and --data {o.data} has none ({why}); "
                              "give --accuracy-data DIR")
        # how its folders map to the model's classes is checked by quantize, which knows the checkpoint's classes
    return _replace(o, accuracy_data=o.data)


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
        return load_targets(options.targets, precisions=precisions, batch=options.profile)
    if host.compute_capability:
        return [host_target(host.compute_capability, host.tensorrt, precisions, options.profile)]
    return [any_gpu_target(precisions, options.profile)]


def run_deploy(options: DeployOptions, *, progress: ProgressFn | None = None) -> DeployResult:
    """Run (or, with ``dry_run``, plan) the deployment; see the module docstring.

    Raises:
        ResnestDeployError: Bad options or targets (before anything runs), or a step's error (the run stops;
            finished steps stay recorded).
    """
    settled = validate(options)
    options, targets = settled.options, settled.targets
    workflow = Workflow(options, targets, settled.host, settled.calibration, settled.data_key)
    steps = workflow.build()
    _check_arch(RunState.load(options.run_dir), options)
    if options.dry_run:
        state = RunState.load(options.run_dir)
        return DeployResult(options.run_dir, dry_run(steps, state, force=options.force), True, targets,
                            list(settled.notes))
    with run_lock(options.run_dir, wait=options.wait):  # the state, artifacts and repository change under it
        state = RunState.load(options.run_dir)
        _check_arch(state, options)
        state.arch = options.arch
        removed = leftovers(options.run_dir, options.arch, steps, targets)
        remove(removed)
        state.keep_only({s.name for s in steps})
        pruned = [StepResult("prune", "ran", 0.0, f"{len(removed)} file(s)",
                             "an earlier run here made what this one does not")] if removed else []
        results = _run_and_summarize(workflow, steps, state, pruned, progress)
    return DeployResult(options.run_dir, results, False, targets, list(settled.notes),
                        options.run_dir / "summary.json")


def _run_and_summarize(workflow: Workflow, steps: list, state: RunState, pruned: list[StepResult],
                       progress: ProgressFn | None) -> list[StepResult]:
    """Run the steps and write ``summary.json``: after the last step, or with the reason when a step stopped the
    run (the steps finished before it are in the summary too)."""
    o = workflow.o
    try:
        results = pruned + run_steps(steps, state, force=o.force, progress=progress)
    except ResnestDeployError as exc:
        done = [StepResult(name, r.get("status", "ran"), r.get("seconds", 0.0), "", r.get("note") or "",
                           tuple(r.get("warnings") or ())) for name, r in state.steps.items()]
        write_summary(o.run_dir, command=o.command, arch=o.arch, steps=done, exit_code=exc.exit_code,
                      reason=f"stopped: {exc}", verdict=None)
        raise
    failed = [r for r in results if r.status == "failed"]
    reason = f"{failed[0].name}: {failed[0].reason}" if failed else "ok"
    write_summary(o.run_dir, command=o.command, arch=o.arch, steps=results, exit_code=1 if failed else 0,
                  reason=reason, verdict=workflow.verdicts())
    return results


def _check_arch(state: RunState, options: DeployOptions) -> None:
    """A run folder holds one architecture's run: another's is refused, never overwritten.

    Raises:
        ConfigError: The folder's run was for another architecture.
    """
    if state.arch and state.arch != options.arch:
        raise ConfigError(f"{options.run_dir} holds a deploy of {state.arch}; give --output another folder for "
                          f"{options.arch} (or remove {options.run_dir})")
