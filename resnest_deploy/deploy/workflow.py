"""The steps of one deploy run and the paths they share: export -> FP16/INT8 -> parity of each -> latency -> per
target: engines here (when this host is that target) or a build bundle -> Triton model repository -> report.

Steps refer to the steps they consume as objects (:attr:`Step.after`); the workflow is built without loading torch,
so a rerun with nothing to do is quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..kinds import ArtifactKind, Precision
from . import actions, summary
from .host import Host
from .options import DeployOptions
from .sections import RunView
from .steps import Step
from .targets import Target
from .triton import onnx_model_name, plan_model_name, plan_path
from .triton_image import MODEL_FILES, ensemble_name, preprocess_model_name, sources_key


@dataclass(frozen=True)
class RunLayout:
    """Where a run keeps its files: ``onnx/``, ``reports/``, ``targets/<name>/``, ``model_repository/``."""

    run: Path
    arch: str

    def onnx(self, kind: ArtifactKind) -> Path:
        return self.run / "onnx" / kind.file_name(self.arch)

    def report(self, *parts: str) -> Path:
        """``reports/<arch>.<part>.<part>...json`` (its Markdown twin beside it)."""
        return self.run / "reports" / ".".join((self.arch, *parts, "json"))

    @property
    def repository(self) -> Path:
        return self.run / "model_repository"

    @property
    def timing_cache(self) -> Path:
        return self.run / "timing.cache"

    def bundle(self, target: Target) -> Path:
        return self.run / "targets" / target.name


def manifest(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def pair(report: Path) -> list[Path]:
    """A JSON report and its Markdown twin."""
    return [report, report.with_suffix(".md")]


class Workflow:
    """The steps of one run (see the module docstring).

    Args:
        options: The run's options, already validated.
        targets: The target GPUs.
        host: This machine (its GPU decides which targets build here).
        calibration: The calibration images chosen once for the run (None without INT8).
        data_key: Hash of the parity image folder's file list (None for synthetic inputs).
    """

    def __init__(self, options: DeployOptions, targets: list[Target], host: Host, calibration: object | None,
                 data_key: str | None) -> None:
        self.o = options
        self.targets = targets
        self.host = host
        self.calibration = calibration
        self.data_key = data_key
        self.layout = RunLayout(options.run_dir, options.arch)
        self.kinds = options.kinds
        self.cpu_kind = ArtifactKind.int8_cpu if options.cpu_precision == Precision.int8 else ArtifactKind.fp32
        self.steps: list[Step] = []
        self.makers: dict[ArtifactKind, Step] = {}  # the step that writes each ONNX file

    def is_local(self, target: Target) -> bool:
        """Whether this host is ``target`` (same compute capability and TensorRT major), so it builds here."""
        if not self.host.compute_capability or target.compute_capability != self.host.compute_capability:
            return False
        major = self.host.tensorrt_major
        return major is not None and target.tensorrt_major in (None, major)

    def weights(self) -> list[Path]:
        return [Path(self.o.weights)] if self.o.weights else []

    def view(self) -> RunView:
        """What the report shows of this run's targets and repository."""
        fp32, cpu = self.layout.onnx(ArtifactKind.fp32), self.layout.onnx(self.cpu_kind)
        entries, _ = actions.repository_contents(self.o, fp32, cpu, self.targets)
        return RunView(self.o.arch, self.targets, frozenset(t.name for t in self.targets if self.is_local(t)),
                       self.layout.repository, entries, Precision(self.o.cpu_precision))

    def _add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    # -- the steps ----------------------------------------------------------------------------------------
    def build(self) -> list[Step]:
        self._artifacts()
        for kind in self.kinds:
            self._parity(kind)
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
        o, fp32 = self.o, self.layout.onnx(ArtifactKind.fp32)
        export = self._add(Step("export", self.weights(), {"arch": o.arch, "seed": o.seed, "img_size": o.img_size},
                                [fp32, manifest(fp32)], lambda: actions.export(o, fp32)))
        self.makers[ArtifactKind.fp32] = export
        for kind in self.kinds:
            if kind is ArtifactKind.fp32:
                continue
            out = self.layout.onnx(kind)
            options = {} if kind is ArtifactKind.fp16 else {
                "calib": self.calibration.key(self._input_config()), "size": o.calib_size, "seed": o.seed,
                **actions.budget_key(o)}
            self.makers[kind] = self._add(Step(
                f"quantize {kind}", [fp32], options, [out, manifest(out)],
                lambda out=out, kind=kind: actions.quantize(fp32, out, kind, o, self.calibration), (export,)))

    def _input_config(self):
        from resnest_deploy.models import get_config

        cfg = get_config(self.o.arch).input
        return cfg.at_size(self.o.img_size) if self.o.img_size else cfg

    def _parity(self, kind: ArtifactKind) -> Step:
        artifact, report = self.layout.onnx(kind), self.layout.report(str(kind), "parity")
        return self._add(Step(
            f"parity {kind}", [artifact, *self.weights()],
            {"data": self.data_key, "samples": self.o.samples, "seed": self.o.seed}, pair(report),
            lambda: actions.parity(artifact, report, self.o, batch=8), (self.makers[kind],)))

    def _latency(self) -> None:
        artifacts = [self.layout.onnx(k) for k in self.kinds]
        report = self.layout.report("cpu", "bench")
        self._add(Step(
            "latency cpu", artifacts, {"batches": list(self.o.bench_batches), "iters": self.o.iters}, pair(report),
            lambda: actions.bench(artifacts, report, self.o, ("eager", "ort")), tuple(self.makers.values())))

    def _local_target(self, target: Target) -> None:
        builds = []
        for precision in target.precisions:
            kind = ArtifactKind(precision)
            engine = plan_path(self.layout.repository, self.o.arch, precision, target)
            build = self._add(Step(
                f"build {target.name} {precision}", [self.layout.onnx(kind)], target.to_dict(),
                [engine, manifest(engine)],
                lambda k=kind, e=engine: actions.build(self.layout.onnx(k), e, target, self.layout.timing_cache),
                (self.makers[kind],)))
            builds.append(build)
            report = self.layout.report(target.name, precision, "parity")
            self._add(Step(
                f"parity {target.name} {precision}", [engine, *self.weights()],
                {"data": self.data_key, "samples": self.o.samples}, pair(report),
                lambda e=engine, r=report: actions.parity(e, r, self.o, batch=target.profile[1]), (build,)))
        engines = [plan_path(self.layout.repository, self.o.arch, p, target) for p in target.precisions]
        report = self.layout.report(target.name, "bench")
        self._add(Step(
            f"latency {target.name}", engines, {"batches": list(self.o.bench_batches), "iters": self.o.iters},
            pair(report), lambda: actions.bench(engines, report, self.o, ("eager", "trt")), tuple(builds)))

    def _bundle(self, target: Target) -> None:
        folder = self.layout.bundle(target)
        onnx_files = {p: self.layout.onnx(ArtifactKind(p)) for p in target.precisions}
        makers = tuple(dict.fromkeys(self.makers[ArtifactKind(p)] for p in target.precisions))
        self._add(Step(
            f"bundle {target.name}", [*dict.fromkeys([*onnx_files.values(), self.layout.onnx(ArtifactKind.fp32)]),
                                      *self.weights()],
            {"target": target.to_dict(), "targets": [t.to_dict() for t in self.targets], "data": self.data_key},
            [folder / "build.sh", folder / "target.json", *(folder / "onnx" / f.name for f in onnx_files.values())],
            lambda: actions.bundle(folder, target, self.o, onnx_files, self.layout.onnx(ArtifactKind.fp32),
                                   self.targets),
            tuple(dict.fromkeys((*makers, self.makers[ArtifactKind.fp32])))))

    def _repository(self) -> None:
        fp32, cpu = self.layout.onnx(ArtifactKind.fp32), self.layout.onnx(self.cpu_kind)
        root = self.layout.repository
        configs = [root / onnx_model_name(self.o.arch) / "config.pbtxt",
                   root / onnx_model_name(self.o.arch) / "1" / "model.onnx"]
        configs += [root / plan_model_name(self.o.arch, p) / "config.pbtxt" for p in Precision
                    if any(p in t.precisions and self.is_local(t) for t in self.targets)]  # plans built here
        image = root / preprocess_model_name(self.o.arch)
        configs += [image / "config.pbtxt", *(image / "1" / name for name in MODEL_FILES),
                    root / ensemble_name(self.o.arch) / "config.pbtxt"]
        self._add(Step(
            "triton repository", [fp32, cpu], {"targets": [t.to_dict() for t in self.targets], "data": self.data_key,
                                               "preprocess": sources_key()},
            configs, lambda: actions.repository(root, self.o, fp32, cpu, self.targets),
            tuple(dict.fromkeys((self.makers[ArtifactKind.fp32], self.makers[self.cpu_kind])))))

    def _report(self) -> None:
        inputs = [p for s in self.steps for p in s.outputs if p.suffix == ".json" and "reports" in p.parts
                  or p.suffix == ".pbtxt"]  # the page's repository section reads the configs
        out = self.o.run_dir / "report.html"
        self._add(Step(
            "report", inputs, {"targets": [t.to_dict() for t in self.targets],
                               "local": [t.name for t in self.targets if self.is_local(t)]},
            [out, out.with_suffix(".md")], self._write_report, tuple(self.steps)))

    def verdicts(self) -> dict:
        """The CPU model's and every target's verdict (see :mod:`.summary`)."""
        local = {t.name for t in self.targets if self.is_local(t)}
        return summary.verdicts(self.o.run_dir, self.o.arch, str(self.cpu_kind), self.layout.onnx(self.cpu_kind),
                                self.targets, local, self.layout.report)

    def _write_report(self) -> None:
        from resnest_deploy.reports.page import build_report

        from .sections import repository_section, target_sections, verdict_section

        view = self.view()
        build_report(self.o.run_dir, self.o.run_dir / "report.html", command=self.o.command,
                     lead=[verdict_section(self.verdicts())],
                     extra=[*target_sections(view), repository_section(view)])

