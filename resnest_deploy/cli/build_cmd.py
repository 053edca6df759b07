"""`resnest-deploy build`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .render import print_table

BUILD_STAGES = ("import tensorrt", "parse", "build", "inspect")


def build(
    model: Annotated[Path, typer.Argument(help="ONNX file: FP32, FP16-typed or Q/DQ INT8 (the precision is in it).")],
    batch: Annotated[str, typer.Option(help="Optimization profile MIN:OPT:MAX batch sizes (or one number).")]
    = "1:8:32",
    img_size: Annotated[int | None, typer.Option(help="Input side, for ONNX files with dynamic height/width.")]
    = None,
    workspace: Annotated[float, typer.Option(help="Workspace memory limit in GiB.")] = 4.0,
    opt_level: Annotated[int, typer.Option(help="Builder optimization level 0-5.")] = 3,
    timing_cache: Annotated[Path | None, typer.Option(help="Timing cache: loaded if present, merged, saved.")]
    = None,
    hardware_compat: Annotated[str, typer.Option(help="none (this GPU), ampere+ or same-cc.")] = "none",
    version_compatible: Annotated[bool, typer.Option(
        "--version-compatible", help="Engine that later TensorRT runtimes can run.")] = False,
    tf32: Annotated[bool, typer.Option("--tf32/--no-tf32", help="Allow TF32 in FP32 layers.")] = True,
    output: Annotated[Path | None, typer.Option(help="Engine path [default: <model>.engine].")] = None,
    emit_script: Annotated[Path | None, typer.Option(
        help="Instead of building here, write DIR with the ONNX, this tool and build.sh for a GPU host.")] = None,
    device: Annotated[int, typer.Option(help="CUDA device index.")] = 0,
) -> None:
    """Build a TensorRT engine (10.x or 11.x) with a JSON manifest; the ONNX decides the precision."""
    from exporters.tensorrt_builder import BuildOptions, build_engine
    from exporters.tensorrt_builder import emit_script as write_script

    from .progress import stage_progress

    options = BuildOptions(
        model=model, batch=batch, img_size=img_size, workspace_gib=workspace, opt_level=opt_level,
        timing_cache=timing_cache, hardware_compat=hardware_compat, version_compatible=version_compatible,
        tf32=tf32, output=output, device=device,
    )
    if emit_script is not None:
        script = write_script(options, emit_script)
        typer.echo(f"wrote {script} (with {model.name} and the tool's code); on a GPU host run: bash {script}")
        return
    with stage_progress(f"building {model.name}", BUILD_STAGES) as advance:
        result = build_engine(options, progress=advance)
    r = result.record
    profile = r["profiles"][0]
    print_table(f"TensorRT {r['tensorrt']} engine for {r['gpu']['name']} (sm {r['gpu']['compute_capability']})",
                ("precision", "profile min/opt/max", "build (s)", "size (MB)", "layers"),
                [(r["precision"], f"{profile['min']} / {profile['opt']} / {profile['max']}",
                  f"{r['build_seconds']:.1f}", f"{r['engine_bytes'] / 1e6:.1f}", str(r["layers"].get("count", "?")))])
    typer.echo(f"wrote {result.path} and {result.manifest}")


def register(app: typer.Typer) -> None:
    app.command("build", rich_help_panel="Artifacts")(build)
