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
from ..atomic import write_text_atomic
from ..paths import report_pair
from ..errors import ConfigError, check_minimums
from ..exporters.graph import check_fits, load_artifact
from ..exporters.graph_index import fixed_batch
from ..exporters.metadata import ArtifactMeta, is_engine
from ..models import create_model, get_config
from ..models.synthetic import synthetic_images
from ..runners.factory import open_artifact_runner, target_note
from .contenders import EagerContender, RunSync, plan_eager, runner_call
from .options import Backend, BenchOptions
from .timing import Contender, environment, measure_interleaved

ProgressFn = Callable[[str, int, int], None]


@dataclass
class BenchResult:
    """Latency rows per (contender, batch), environment and provenance (JSON schema in docs/benchmarks.md)."""

    arch: str
    weights: str
    input_size: int
    rows: list[dict[str, Any]]
    environment: dict[str, Any]
    peak_rss_mb: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "resnest-deploy/bench/1", "arch": self.arch, "weights": self.weights,
                "input_size": self.input_size, "environment": self.environment, "peak_rss_mb": self.peak_rss_mb,
                "rows": self.rows, "notes": self.notes}


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


@dataclass
class _Artifact:
    path: Path
    meta: ArtifactMeta | None
    proto: Any


def validate_options(options: BenchOptions) -> None:
    """Check the options before any model is built.

    Raises:
        ConfigError: Unknown backend, bad counts, a backend that does not fit an artifact, or no GPU for trt.
    """
    names = [b.value for b in Backend]
    unknown = [str(b) for b in options.backends if b not in names]
    if unknown:
        raise ConfigError(f"unknown backend {', '.join(unknown)}; choose from {', '.join(names)}")
    if not options.batches or any(isinstance(b, bool) or b < 1 for b in options.batches):
        raise ConfigError(f"--batch sizes must be >= 1, got {list(options.batches)}")
    check_minimums(("--iters", options.iters, 1), ("--warmup", options.warmup, 0), ("--threads", options.threads, 1),
                   ("--seed", options.seed, 0))
    if Backend.trt in options.backends and not torch.cuda.is_available():
        raise ConfigError("the trt backend needs an NVIDIA GPU with TensorRT; no CUDA device found")
    plan_eager(tuple(str(getattr(b, "value", b)) for b in options.backends), torch.cuda.is_available())
    if not options.artifacts and not {Backend.eager, Backend.compile} & set(options.backends):
        raise ConfigError("nothing to time: give an artifact or the eager backend")
    for path in options.artifacts:
        if Path(path).suffix.lower() == ".onnx" and Backend.ort not in options.backends:
            raise ConfigError(f"{path} is an ONNX file but the ort backend is not selected")
        if is_engine(path) and Backend.trt not in options.backends:
            raise ConfigError(f"{path} is a TensorRT engine: add the trt backend (--backends ...,trt)")


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
        for spec in plan_eager(tuple(str(getattr(b, "value", b)) for b in options.backends), cuda):
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
    kind = f"{precision}-cpu" if art.meta is not None and art.meta.target == "cpu" else precision
    label = f"{runner.name.replace('ExecutionProvider', '')} {kind} ({art.path.name})"
    if art.proto is not None:
        return [_Loaded(label, "ort", precision, lambda x: runner_call(runner, x, engine_only=False), fixed, rss,
                        close=close, note=target_note(art.meta, runner.name))]
    return [_Loaded(f"{label} engine only", "trt", precision, lambda x: runner_call(runner, x, engine_only=True),
                    fixed, rss, "engine only (device-resident)", close),
            _Loaded(f"{label} end to end", "trt", precision, lambda x: runner_call(runner, x, engine_only=False),
                    fixed, 0.0)]


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
            raise ConfigError(f"{c.label} has a fixed batch of {c.fixed_batch}, which --batch "
                              f"{','.join(map(str, batches))} does not include; add {c.fixed_batch}")
        notes += [f"{c.label}: fixed batch {c.fixed_batch}, skipped at batch {b}" for b in batches
                  if b != c.fixed_batch]
    return notes


def _measure_batch(loaded: list[_Loaded], batch: int, size: int, options: BenchOptions,
                   progress: ProgressFn | None) -> list[dict[str, Any]]:
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

    stats = measure_interleaved(contenders, warmup=options.warmup, iters=options.iters, progress=report)
    reference = next(((s.p50, c.label) for s, c in zip(stats, present) if c.backend == "eager"), (None, None))
    return [{**s.to_dict(), "backend": c.backend, "precision": c.precision, "timing": c.timing,
             "load_rss_mb": c.rss_mb, "reference": reference[1],
             "ratio_vs_eager": s.p50 / reference[0] if reference[0] else None} for s, c in zip(stats, present)]


def report_paths(path: Path | None, options: BenchOptions) -> tuple[Path, Path]:
    """The JSON and Markdown report paths for ``--report PATH``, checked writable before anything is timed.

    The default is ``<artifact>.bench.json`` beside the first artifact, else ``runs/<arch>/<arch>.bench.json``.

    Raises:
        ConfigError: No artifact and no ``--arch`` to name the default report.
        OutputError: The report folder cannot be written.
    """
    if options.artifacts:
        first = Path(options.artifacts[0])
        default = first.with_name(first.name + ".bench.json")
    elif options.arch:
        default = Path("runs") / options.arch / f"{options.arch}.bench.json"
    else:
        raise ConfigError("nothing to name the report after: give an artifact, --arch or --report")
    return report_pair(path, default, (".json", ".md"))


def reference_name(result: BenchResult) -> str:
    """The contender ratios are taken against (the first eager contender), for column headers."""
    return next((r["reference"] for r in result.rows if r.get("reference")), "eager").split(" (")[0]


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
        ratio = f"{r['ratio_vs_eager']:.2f}x" if r["ratio_vs_eager"] else ""
        lines.append(f"| {r['batch']} | {r['name']} | {r.get('timing', '')} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['mean_ms']:.2f} | {r['std_ms']:.2f} | {r['throughput_ips']:.1f} | "
                     f"{ratio} |")
    lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def write_reports(result: BenchResult, paths: Path | tuple[Path, Path]) -> tuple[Path, Path]:
    """Write the JSON and the Markdown atomically: to ``paths`` (from :func:`report_paths`), or beside one path."""
    json_path, md_path = paths if isinstance(paths, tuple) else report_pair(
        paths, Path(paths) / f"{result.arch}.bench.json", (".json", ".md"))
    write_text_atomic(json_path, json.dumps(result.to_dict(), indent=2) + "\n")
    write_text_atomic(md_path, render_markdown(result))
    return json_path, md_path
