"""`resnest-deploy bench`: eager PyTorch, ONNX Runtime and TensorRT timed the same way, interleaved.

For every batch size, all contenders (the eager model and each artifact on its backend) run round by round after
a separate warm-up; latency percentiles, throughput and the ratio to eager are reported with an environment block
and the weights' provenance (real checkpoint or random init with BatchNorm re-estimated).
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

from exporters.graph import check_fits, fixed_batch, load_artifact
from exporters.metadata import is_engine

from ..atomic import write_text_atomic
from ..errors import ConfigError
from ..models import create_model, get_config
from ..models.batchnorm import synthetic_images
from ..runners.base import Runner
from ..runners.factory import open_artifact_runner
from ..runners.torch_runner import TorchRunner
from .timing import Contender, environment, measure_interleaved

BACKENDS = ("eager", "ort", "trt")
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BenchOptions:
    """What to time. See ``resnest-deploy bench --help``."""

    artifacts: tuple[Path, ...]
    arch: str | None = None
    weights: Path | None = None
    backends: tuple[str, ...] = ("eager", "ort")
    batches: tuple[int, ...] = (1, 8)
    warmup: int = 3
    iters: int = 20
    threads: int | None = None
    seed: int = 0
    cuda_graph: bool = False  # TensorRT engines replay a captured CUDA graph per batch size


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


def parse_list(text: str, *, kind: str) -> tuple[str, ...]:
    """Split a comma-separated option value, dropping blanks."""
    items = tuple(part.strip() for part in text.split(",") if part.strip())
    if not items:
        raise ConfigError(f"--{kind} needs at least one value")
    return items


def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc), falling back to the peak."""
    try:
        with open("/proc/self/statm", encoding="utf-8") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


@dataclass
class _Loaded:
    label: str
    backend: str
    precision: str
    runner: Runner
    fixed_batch: int | None
    rss_mb: float


def _validate(options: BenchOptions) -> None:
    unknown = [b for b in options.backends if b not in BACKENDS]
    if unknown:
        raise ConfigError(f"unknown backend {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    if any(b < 1 for b in options.batches):
        raise ConfigError(f"--batch sizes must be >= 1, got {list(options.batches)}")
    if options.iters < 1 or options.warmup < 0:
        raise ConfigError("--iters must be >= 1 and --warmup >= 0")
    if "trt" in options.backends and not torch.cuda.is_available():
        raise ConfigError("the trt backend needs an NVIDIA GPU with TensorRT; no CUDA device found")
    if not options.artifacts and "eager" not in options.backends:
        raise ConfigError("nothing to time: give an artifact or the eager backend")


def run_bench(options: BenchOptions, *, progress: ProgressFn | None = None) -> BenchResult:
    """Time the eager model and every artifact at every batch size, interleaved.

    Raises:
        ConfigError: Unknown backend, bad batch, or an artifact that does not fit the architecture.
        ArtifactError: An artifact is missing or unreadable.
    """
    _validate(options)
    threads = options.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    metas = []
    for path in options.artifacts:
        if path.suffix.lower() == ".onnx" and "ort" not in options.backends:
            raise ConfigError(f"{path} is an ONNX file but the ort backend is not selected")
        if is_engine(path) and "trt" not in options.backends:
            raise ConfigError(f"{path} is a TensorRT engine: add the trt backend (--backends ...,trt)")
        proto, meta = load_artifact(path, load_external_data=False)
        metas.append((path, meta, proto))
    arch = options.arch or next((m.arch for _, m, _ in metas if m), None)
    if arch is None:
        raise ConfigError("no architecture: pass --arch (the artifacts carry no resnest-deploy metadata)")
    cfg = get_config(arch)
    size = next((m.input.size for _, m, _ in metas if m), cfg.input.size)
    meta0 = next((m for _, m, _ in metas if m), None)
    model = create_model(arch, weights=options.weights, num_classes=meta0.num_classes if meta0 else None,
                         seed=meta0.seed if meta0 and meta0.seed is not None else options.seed)
    loaded: list[_Loaded] = []
    for path, meta, proto in metas:
        if meta and meta.arch != arch:
            raise ConfigError(f"{path.name} was exported from {meta.arch}, not {arch}")
        if proto is not None:
            check_fits(proto, num_classes=model.config.num_classes, size=size, what=f"{arch} ({path.name})")
        before = _rss_mb()
        runner = open_artifact_runner(path, provider="auto", threads=threads, cuda_graph=options.cuda_graph)
        runner.__enter__()
        fixed = fixed_batch(proto) if proto is not None else runner.input_specs[0].shape[0]
        precision = meta.precision if meta else "fp32"
        label = runner.name.replace("ExecutionProvider", "")
        loaded.append(_Loaded(f"{label} {precision} ({path.name})", "trt" if proto is None else "ort", precision,
                              runner,
                              fixed if isinstance(fixed, int) else None, _rss_mb() - before))
    if "eager" in options.backends:
        before = _rss_mb()
        eager = TorchRunner(model, size=size)
        eager.__enter__()
        loaded.insert(0, _Loaded(f"eager PyTorch fp32 ({threads} threads)", "eager", "fp32", eager, None,
                                 _rss_mb() - before))
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    try:
        for batch in options.batches:
            x = synthetic_images(batch, size, torch.Generator().manual_seed(options.seed + batch)).numpy()
            present = [c for c in loaded if c.fixed_batch in (None, batch)]
            for c in loaded:
                if c not in present:
                    notes.append(f"{c.label}: fixed batch {c.fixed_batch}, skipped at batch {batch}")
            contenders = [Contender(c.label, _runner_call(c.runner, x), batch) for c in present]

            def report(phase: str, done: int, total: int, batch: int = batch) -> None:
                if progress:
                    progress(f"batch {batch}: {phase}", done, total)

            stats = measure_interleaved(contenders, warmup=options.warmup, iters=options.iters, progress=report)
            eager_p50 = next((s.p50 for s, c in zip(stats, present) if c.backend == "eager"), None)
            for s, c in zip(stats, present):
                row = {**s.to_dict(), "backend": c.backend, "precision": c.precision, "load_rss_mb": c.rss_mb,
                       "ratio_vs_eager": s.p50 / eager_p50 if eager_p50 else None}
                rows.append(row)
    finally:
        for c in loaded:
            c.runner.__exit__(None, None, None)
    env = environment(threads)
    return BenchResult(arch=arch, weights=model.weights_info.description, input_size=size, rows=rows,
                       environment=env, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
                       notes=notes)


def _runner_call(runner: Runner, x: np.ndarray) -> Callable[[], Any]:
    name = runner.input_specs[0].name
    feed = {name: x}
    return lambda: runner.infer(feed)


def default_report_path(first_artifact: Path | None, arch: str) -> Path:
    """``<artifact>.bench.json`` beside the first artifact, else ``runs/<arch>/<arch>.bench.json``."""
    if first_artifact is not None:
        return first_artifact.with_name(first_artifact.name + ".bench.json")
    return Path("runs") / arch / f"{arch}.bench.json"


def render_markdown(result: BenchResult) -> str:
    """Latency table with ratios, environment and provenance."""
    env = result.environment
    lines = [f"# Latency: {result.arch} at {result.input_size}px", "",
             f"- weights: {result.weights}",
             f"- machine: {env.get('cpu')}, {env.get('cores')} cores, {env.get('threads')} threads; "
             f"torch {env.get('torch')}, onnxruntime {env.get('onnxruntime', '-')}, "
             f"tensorrt {env.get('tensorrt', '-')}",
             f"- peak RSS {result.peak_rss_mb:.0f} MB", "",
             "| batch | contender | p50 ms | p90 ms | p99 ms | mean ms | std ms | images/s | vs eager |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result.rows:
        ratio = f"{r['ratio_vs_eager']:.2f}x" if r["ratio_vs_eager"] else ""
        lines.append(f"| {r['batch']} | {r['name']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['mean_ms']:.1f} | {r['std_ms']:.1f} | {r['throughput_ips']:.1f} | {ratio} |")
    lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def write_reports(result: BenchResult, json_path: Path) -> tuple[Path, Path]:
    """Write the JSON and the Markdown beside it, atomically."""
    write_text_atomic(json_path, json.dumps(result.to_dict(), indent=2) + "\n")
    md = json_path.with_suffix(".md")
    write_text_atomic(md, render_markdown(result))
    return json_path, md
