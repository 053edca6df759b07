"""`resnest-deploy bench`: eager PyTorch, torch.compile, ONNX Runtime and TensorRT timed the same way, interleaved.

For every batch size, all contenders (see :mod:`resnest_deploy.bench.contenders` for which, on CPU-only and CUDA
hosts) run round by round after a separate warm-up; latency percentiles, throughput and the ratio to the
reference contender (the first eager one, named in every row) are reported with an environment block and the
weights' provenance (real checkpoint or random init with BatchNorm re-estimated).
"""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import interrupts
from ..atomic import write_texts_atomic
from ..paths import existing_file, report_pair
from ..progress import ProgressFn
from ..errors import ArtifactError, ConfigError
from ..kinds import ArtifactKind
from resnest_deploy.exporters.graph import check_fits, load_artifact
from resnest_deploy.exporters.graph_index import fixed_batch
from resnest_deploy.exporters.metadata import ArtifactMeta
from ..models import create_model, get_config
from ..models.synthetic import synthetic_images
from ..runners.factory import open_artifact_runner, target_note
from .contenders import EagerContender, RunSync, eager_contenders, runner_call
from .options import BenchOptions, validate_options
from ..timing import Contender, LatencyStats, environment, measure_interleaved



@dataclass(frozen=True)
class BenchRow:
    """One contender at one batch size: its latency statistics, what it is, and its ratio to the reference."""

    stats: LatencyStats
    backend: str
    precision: str
    timing: str
    load_rss_mb: float
    reference: str | None
    ratio: float | None  # p50 / the reference contender's p50
    artifact: str | None = None  # the artifact's file name (None for eager contenders)
    kind: str | None = None  # the artifact's kind (fp32, fp16, int8, int8-cpu)
    ratio_vs_fp32_onnx: float | None = None  # p50 / the FP32 ONNX on ONNX Runtime's p50, when it was timed

    @property
    def name(self) -> str:
        return self.stats.name

    @property
    def batch(self) -> int:
        return self.stats.batch

    def to_dict(self) -> dict[str, Any]:
        return {**self.stats.to_dict(), "backend": self.backend, "precision": self.precision, "timing": self.timing,
                "load_rss_mb": self.load_rss_mb, "reference": self.reference, "ratio_vs_eager": self.ratio,
                "artifact": self.artifact, "kind": self.kind, "ratio_vs_fp32_onnx": self.ratio_vs_fp32_onnx}


@dataclass
class BenchResult:
    """Latency rows per (contender, batch), environment and provenance (JSON schema in docs/benchmarks.md)."""

    arch: str
    weights: str
    input_size: int
    rows: list[BenchRow]
    environment: dict[str, Any]
    peak_rss_mb: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "resnest-deploy/bench/1", "arch": self.arch, "weights": self.weights,
                "input_size": self.input_size, "environment": self.environment, "peak_rss_mb": self.peak_rss_mb,
                "rows": [r.to_dict() for r in self.rows], "notes": self.notes}


def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc), falling back to the peak."""
    try:
        with open("/proc/self/statm", encoding="utf-8") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


@dataclass
class _Loaded:
    """A contender ready to time: how to prepare a batch, and what it can take."""

    label: str
    backend: str
    precision: str
    prepare: Callable[[np.ndarray], RunSync]
    fixed_batch: int | None
    rss_mb: float
    timing: str = "end to end"
    close: Callable[[], None] = lambda: None
    note: str | None = None
    artifact: str | None = None  # the file's name, for rows that time an artifact
    kind: str | None = None  # its artifact kind (fp32, fp16, int8, int8-cpu)


@dataclass
class _Artifact:
    path: Path
    meta: ArtifactMeta | None
    proto: Any


def run_bench(options: BenchOptions, *, progress: ProgressFn | None = None) -> BenchResult:
    """Time the eager model and every artifact at every batch size, interleaved.

    Raises:
        ConfigError: Unknown backend, bad batch, an artifact that does not fit the architecture or takes none of
            the requested batch sizes.
        ArtifactError: An artifact is missing or unreadable.
    """
    validate_options(options)
    threads = options.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    artifacts = []
    for path in options.artifacts:
        proto, meta = load_artifact(path, load_external_data=False)
        artifacts.append(_Artifact(Path(path), meta, proto))
    arch = options.arch or next((a.meta.arch for a in artifacts if a.meta), None)
    if arch is None:
        raise ConfigError("no architecture: pass --arch (the artifacts carry no resnest-deploy metadata)")
    cfg = get_config(arch)
    meta0 = next((a.meta for a in artifacts if a.meta), None)
    size = meta0.input.size if meta0 else cfg.input.size
    model = create_model(arch, weights=options.weights, num_classes=meta0.num_classes if meta0 else None,
                         seed=meta0.seed if meta0 and meta0.seed is not None else options.seed)
    loaded: list[_Loaded] = []
    notes: list[str] = []
    try:
        loaded = _open_contenders(options, artifacts, model, arch, size, threads)
        notes += _batch_notes(loaded, options.batches) + [c.note for c in loaded if c.note]
        if warmup_rounds(loaded, options.warmup) != options.warmup:
            notes.append(f"warm-up raised to {COMPILE_WARMUP} rounds: torch.compile records its CUDA graphs during "
                         "its first calls")
        with interrupts.stage("bench"):
            rows = [row for batch in options.batches
                    for row in _measure_batch(loaded, batch, size, options, progress)]
    finally:
        for c in loaded:
            c.close()
    return BenchResult(arch=arch, weights=model.weights_info.description, input_size=size, rows=rows,
                       environment=environment(threads),
                       peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, notes=notes)


def _open_contenders(options: BenchOptions, artifacts: list[_Artifact], model: torch.nn.Module, arch: str,
                     size: int, threads: int) -> list[_Loaded]:
    """Load the eager contenders and open a runner per artifact, recording the memory each one took."""
    cuda = torch.cuda.is_available()
    loaded: list[_Loaded] = []
    try:
        for spec in eager_contenders(tuple(str(getattr(b, "value", b)) for b in options.backends), cuda):
            before = _rss_mb()
            contender = EagerContender.load(spec, model)
            label = spec.label if cuda else f"{spec.label} ({threads} threads)"
            loaded.append(_Loaded(label, "compile" if spec.compiled else "eager", spec.precision, contender.prepare,
                                  None, _rss_mb() - before, "device-resident" if cuda else "in-process"))
        for art in artifacts:
            loaded += _open_artifact(art, options, model, arch, size, threads)
    except BaseException:
        for c in loaded:
            c.close()
        raise
    return loaded


def _open_artifact(art: _Artifact, options: BenchOptions, model: torch.nn.Module, arch: str, size: int,
                   threads: int) -> list[_Loaded]:
    """One contender for an ONNX file; two for an engine (the engine alone, and end to end)."""
    if art.meta and art.meta.arch != arch:
        raise ConfigError(f"{art.path.name} was exported from {art.meta.arch}, not {arch}")
    if art.proto is not None:
        check_fits(art.proto, num_classes=model.config.num_classes, size=size, what=f"{arch} ({art.path.name})")
    before = _rss_mb()
    # Interleaved timing: an idle ONNX Runtime session's spinning threads would take a core from the next contender.
    runner = open_artifact_runner(art.path, provider="auto", threads=threads, cuda_graph=options.cuda_graph,
                                  spinning=False)
    runner.__enter__()
    close = lambda: runner.__exit__(None, None, None)  # noqa: E731
    rss = _rss_mb() - before
    fixed = fixed_batch(art.proto) if art.proto is not None else runner.input_specs[0].shape[0]
    fixed = fixed if isinstance(fixed, int) else None
    precision = art.meta.precision if art.meta else "fp32"
    kind = ArtifactKind.of(precision, art.meta.target if art.meta else "tensorrt").value
    label = f"{runner.name.replace('ExecutionProvider', '')} {kind} ({art.path.name})"
    name = art.path.name
    if art.proto is not None:
        return [_Loaded(label, "ort", precision, lambda x: runner_call(runner, x, engine_only=False), fixed, rss,
                        close=close, note=target_note(art.meta, runner.name), artifact=name, kind=kind)]
    return [_Loaded(f"{label} engine only", "trt", precision, lambda x: runner_call(runner, x, engine_only=True),
                    fixed, rss, "engine only (device-resident)", close, artifact=name, kind=kind),
            _Loaded(f"{label} end to end", "trt", precision, lambda x: runner_call(runner, x, engine_only=False),
                    fixed, 0.0, artifact=name, kind=kind)]


def _batch_notes(loaded: list[_Loaded], batches: tuple[int, ...]) -> list[str]:
    """Notes for fixed-batch contenders skipped at some batch sizes; an error when one fits none of them.

    Raises:
        ConfigError: A fixed-batch artifact takes none of the requested batch sizes (the table would hold
            nothing for it).
    """
    notes = []
    for c in loaded:
        if c.fixed_batch is None:
            continue
        if c.fixed_batch not in batches:
            raise ConfigError(f"{c.label} has a fixed batch of {c.fixed_batch}, which --bench-batch "
                              f"{','.join(map(str, batches))} does not include; add {c.fixed_batch}")
        notes += [f"{c.label}: fixed batch {c.fixed_batch}, skipped at batch {b}" for b in batches
                  if b != c.fixed_batch]
    return notes


COMPILE_WARMUP = 3  # torch.compile(mode="reduce-overhead") records its CUDA graphs during its first calls


def warmup_rounds(loaded: list[_Loaded], asked: int) -> int:
    """The warm-up rounds a batch gets: what was asked, but at least three when a torch.compile contender is timed
    (rounds before its graphs are recorded would be timed as steady state)."""
    return max(asked, COMPILE_WARMUP) if any(c.backend == "compile" for c in loaded) else asked


def _measure_batch(loaded: list[_Loaded], batch: int, size: int, options: BenchOptions,
                   progress: ProgressFn | None) -> list[BenchRow]:
    """Time every contender that takes ``batch``, interleaved; one row each, with its ratio to the reference."""
    x = synthetic_images(batch, size, torch.Generator().manual_seed(options.seed + batch)).numpy()
    present = [c for c in loaded if c.fixed_batch in (None, batch)]
    contenders = []
    for c in present:
        run, sync = c.prepare(x)
        contenders.append(Contender(c.label, run, batch, sync))

    def report(phase: str, done: int, total: int) -> None:
        interrupts.check()
        if progress:
            progress(f"batch {batch}: {phase}", done, total)

    stats = measure_interleaved(contenders, warmup=warmup_rounds(present, options.warmup), iters=options.iters,
                                progress=report)
    reference = next(((s.p50, c.label) for s, c in zip(stats, present) if c.backend == "eager"), (None, None))
    # What users would otherwise deploy: the FP32 ONNX on ONNX Runtime.
    onnx_fp32 = next((s.p50 for s, c in zip(stats, present) if c.backend == "ort" and c.kind == "fp32"), None)
    return [BenchRow(s, c.backend, c.precision, c.timing, c.rss_mb, reference[1],
                     s.p50 / reference[0] if reference[0] else None, c.artifact, c.kind,
                     s.p50 / onnx_fp32 if onnx_fp32 else None) for s, c in zip(stats, present)]


def report_paths(path: Path | None, options: BenchOptions) -> tuple[Path, Path]:
    """The JSON and Markdown report paths for ``--output PATH``, checked writable before anything is timed.

    The default is ``<artifact>.bench.json`` beside the first artifact, else ``runs/<arch>/<arch>.bench.json``.

    Raises:
        ConfigError: No artifact and no ``--arch`` to name the default report.
        OutputError: The report folder cannot be written.
    """
    if options.artifacts:
        first = existing_file(options.artifacts[0], ArtifactError, "artifact")
        default = first.with_name(first.name + ".bench.json")
    elif options.arch:
        default = Path("runs") / options.arch / f"{options.arch}.bench.json"
    else:
        raise ConfigError("nothing to name the report after: give an artifact, --arch or --output")
    return report_pair(path, default, (".json", ".md"))


def reference_name(result: BenchResult) -> str:
    """The contender ratios are taken against (the first eager contender), for column headers."""
    return next((r.reference for r in result.rows if r.reference), "eager").split(" (")[0]


def render_markdown(result: BenchResult) -> str:
    """Latency table with ratios, environment and provenance."""
    env = result.environment
    lines = [f"# Latency: {result.arch} at {result.input_size}px", "",
             f"- weights: {result.weights}",
             f"- machine: {env.get('cpu')}, {env.get('cores')} cores, {env.get('threads')} threads; "
             f"torch {env.get('torch')}, onnxruntime {env.get('onnxruntime', '-')}, "
             f"tensorrt {env.get('tensorrt', '-')}",
             f"- peak RSS {result.peak_rss_mb:.0f} MB", "",
             f"| batch | contender | timing | p50 ms | p90 ms | p99 ms | mean ms | std ms | images/s | "
             f"vs {reference_name(result)} |",
             "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result.rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio else ""
        s = r.stats
        lines.append(f"| {r.batch} | {r.name} | {r.timing} | {s.p50:.2f} | {s.p90:.2f} | {s.p99:.2f} | {s.mean:.2f} | "
                     f"{s.std:.2f} | {s.throughput:.1f} | {ratio} |")
    lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def write_reports(result: BenchResult, paths: Path | tuple[Path, Path]) -> tuple[Path, Path]:
    """Write the JSON and the Markdown atomically: to ``paths`` (from :func:`report_paths`), or beside one path."""
    json_path, md_path = paths if isinstance(paths, tuple) else report_pair(
        paths, Path(paths) / f"{result.arch}.bench.json", (".json", ".md"))
    write_texts_atomic({json_path: json.dumps(result.to_dict(), indent=2) + "\n", md_path: render_markdown(result)})
    return json_path, md_path
