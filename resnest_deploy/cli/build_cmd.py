"""`resnest-deploy build`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from resnest_deploy.exporters.tensorrt_options import BuildOptions, HardwareCompat
from .options import FLAG, defaults
from .render import print_table

_D = defaults(BuildOptions)


def build(
    model: Annotated[Path, typer.Argument(metavar="MODEL.onnx", help="ONNX file: FP32, FP16-typed or Q/DQ INT8 (the precision is in it).")],
    profile: Annotated[str, typer.Option(
        "--profile", metavar="MIN:OPT:MAX", help="Optimization profile of the engine: MIN:OPT:MAX batch sizes (or one number for a fixed batch).")]
    = _D.batch,
    img_size: Annotated[int | None, typer.Option(min=1, metavar="N", help="Input side, for ONNX files with dynamic height/width.")]
    = _D.img_size,
    workspace: Annotated[float, typer.Option(metavar="GiB", help="Workspace memory limit in GiB.")] = _D.workspace_gib,
    opt_level: Annotated[int, typer.Option(min=0, max=5, metavar="0-5", help="Builder optimization level 0-5.")] = _D.opt_level,
    timing_cache: Annotated[str | None, typer.Option(
        metavar="PATH", help="Timing cache: loaded if present, merged, saved.")]
    = _D.timing_cache,
    hardware_compat: Annotated[HardwareCompat, typer.Option(
        metavar="none|ampere+|same-cc",
        help="GPUs the engine runs on: none (the builder's own GPU model and compute capability: TensorRT's "
             "default), same-cc (any GPU of the builder's compute capability, a little slower), or ampere+ (any "
             "Ampere or newer GPU, slower still).")] = _D.hardware_compat,
    version_compatible: Annotated[bool, typer.Option(
        "--version-compatible", metavar=FLAG, help="Engine that later TensorRT runtimes can run.")]
    = _D.version_compatible,
    tf32: Annotated[bool, typer.Option(
        "--tf32/--no-tf32", metavar=FLAG,
        help="Allow TF32 in FP32 layers (faster on Ampere+, ~1e-3 relative error; parity then judges the engine "
             "with the tf32 preset).")] = _D.tf32,
    output: Annotated[str | None, typer.Option(
        metavar="PATH", help="Engine path, or a folder (existing, or ending in /) [default: <model>.engine].")]
    = _D.output,
    emit_script: Annotated[str | None, typer.Option(metavar="DIR",
        help="Instead of building here, write DIR with the ONNX, this tool and build.sh for a GPU host.")] = None,
    device: Annotated[int, typer.Option(min=0, metavar="N", help="CUDA device index.")] = _D.device,
) -> None:
    """Build a TensorRT engine (10.x or 11.x) with a JSON manifest; the ONNX decides the precision."""
    from resnest_deploy.exporters.build_script import emit_script as write_script
    from resnest_deploy.exporters.tensorrt_builder import build_engine
    from .progress import progress_bar

    options = BuildOptions(
        model=model, batch=profile, img_size=img_size, workspace_gib=workspace, opt_level=opt_level,
        timing_cache=timing_cache, hardware_compat=hardware_compat, version_compatible=version_compatible,
        tf32=tf32, output=output, device=device,
    )
    if emit_script is not None:
        script = write_script(options, emit_script)
        typer.echo(f"wrote {script} (with {model.name} and the tool's code); on a GPU host run: bash {script}")
        return
    with progress_bar(f"building {model.name}") as update:
        result = build_engine(options, progress=update)
    r = result.record
    profile = r.profiles[0]
    print_table(f"TensorRT {r.tensorrt} engine for {r.gpu.get('name')} (sm {r.gpu.get('compute_capability')})",
                ("precision", "profile min/opt/max", "build (s)", "size (MB)", "layers"),
                [(r.precision, f"{profile['min']} / {profile['opt']} / {profile['max']}",
                  f"{r.extra['build_seconds']:.1f}", f"{r.extra['engine_bytes'] / 1e6:.1f}",
                  str(r.extra["layers"].get("count", "?")))])
    typer.echo(f"wrote {result.path} and {result.manifest}")


def register(app: typer.Typer) -> None:
    app.command("build", rich_help_panel="Artifacts")(build)
