"""What ``deploy`` does: its options, importable without torch (the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..kinds import ArtifactKind, Precision
from ..paths import user_path

CPU_MODELS = (Precision.fp32, Precision.int8)  # what the Triton repository can serve on CPUs


@dataclass(frozen=True)
class DeployOptions:
    """One command from an architecture to engines for each target GPU and a Triton model repository.

    Attributes:
        arch: Registered architecture.
        weights: Checkpoint [default: random init with BatchNorm re-estimated].
        precisions: Artifacts to make, verify and build engines for (fp32 is always exported) [default: fp32 and
            fp16, and int8 when ``calib_data`` is given].
        calib_data: INT8 calibration images: folder, list file or ``synthetic``.
        calib_size: Calibration images sampled.
        data: Folder of images for parity (and Triton labels from its class folders) [default: synthetic inputs].
        targets: ``targets.toml`` [default: this host's GPU, else one bundle for the GPU host that runs it].
        profile: Engine profile ``MIN:OPT:MAX`` (targets may set their own).
        output: Run folder [default: ``runs/<arch>``].
        force: Rerun every step.
        dry_run: Print the plan (each step, whether it would run and why) and do nothing.
        samples: Parity inputs per artifact.
        bench_batches: Batch sizes timed.
        iters: Timed rounds per batch size.
        warmup: Untimed rounds before them.
        seed: Seed of random init, calibration sampling and synthetic inputs.
        img_size: Square input size [default: the arch's native size].
        cpu_precision: What the Triton repository serves on CPUs: ``fp32``, or ``int8`` (an extra INT8 graph made
            for ONNX Runtime's CPU kernels; needs ``calib_data``).
        command: The command line that asked for the run, recorded in its summary and report.
        wait: When another deploy holds the run folder, wait for it instead of refusing at once.
        max_accuracy_drop: INT8 graphs keep their most harmful blocks float until top-1 on ``accuracy_data`` is
            within this many points of FP32 (``quantize --max-accuracy-drop``).
        min_agreement: Or until top-1 agrees with FP32 on this fraction of ``accuracy_data``.
        accuracy_data: The images the budget is measured on [default: ``data`` when it is labelled (any images
            for ``min_agreement``)].
    """

    arch: str
    weights: Path | None = None
    precisions: tuple[Precision | str, ...] | None = None
    calib_data: str | None = None
    calib_size: int = 512
    data: Path | None = None
    targets: Path | None = None
    profile: str = "1:8:32"
    output: Path | str | None = None
    force: bool = False
    dry_run: bool = False
    samples: int = 64
    bench_batches: tuple[int, ...] = (1, 8)
    iters: int = 20
    warmup: int = 3
    seed: int = 0
    img_size: int | None = None
    cpu_precision: Precision | str = Precision.fp32
    wait: bool = False
    command: tuple[str, ...] = ()
    max_accuracy_drop: float | None = None
    min_agreement: float | None = None
    accuracy_data: Path | None = None

    @property
    def run_dir(self) -> Path:
        return user_path(self.output) if self.output else Path("runs") / self.arch

    @property
    def kinds(self) -> tuple[ArtifactKind, ...]:
        """The artifacts this run makes and checks: its precisions for TensorRT, and the CPU INT8 graph when the
        repository serves it."""
        made = tuple(ArtifactKind(Precision(p).value) for p in self.precisions or ())
        return made + ((ArtifactKind.int8_cpu,) if self.cpu_precision == Precision.int8 else ())
