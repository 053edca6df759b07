"""A target's build bundle (``targets/<name>/``): what a GPU host of that target needs to make its engines.

The folder holds the ONNX files of the target's precisions, the eager model's exact weights (``weights/``: the
checkpoint, or a random-init model's weights as safetensors, so parity on the GPU host does not depend on that
host's torch reproducing a seed), the plan models' Triton configs (``triton/``), this tool's code, a timing cache
slot and ``build.sh``. build.sh first checks the host (``doctor --gpu``; the compute capability from the driver; the
TensorRT major, and the exact version when the target pins one or, when not, that of the plans already in the
repository): one line and exit 2 on a mismatch. Then it builds each precision straight into the Triton
repository's layout (``<repository>/<model>/1/model.sm<XY>.plan``, with the engine's manifest beside it), checks
it with ``parity``, and only then puts the model's config beside it, so the repository never holds a model without
its plan. The repository is ``$REPOSITORY``, else the run folder's ``model_repository`` two levels up when the
bundle is still in place, else one inside the bundle.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from .. import __version__
from ..atomic import ensure_writable_dir, make_executable, write_text_atomic
from resnest_deploy.exporters.build_script import copy_tool, script_preamble
from .targets import Target
from .triton import ModelEntry, link_or_copy, plan_model_name, render_config

SCRIPT = "build.sh"


def _target_checks(target: Target) -> str:
    lines = []
    if target.compute_capability:
        if target.hardware_compat == "ampere+":
            test = '[ "${CC%%.*}" -ge 8 ]'
            wanted = "compute capability 8.0 or newer (an ampere+ engine)"
        else:
            test = f'[ "$CC" = "{target.compute_capability}" ]'
            wanted = f"compute capability {target.compute_capability}"
        # The driver's word for the GPU (torch may be a build that cannot see it: doctor --gpu says so).
        lines += ['CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d " " '
                  '|| true)',
                  'if [ -z "$CC" ]; then',
                  '  echo "error: this driver does not report the compute capability (nvidia-smi '
                  '--query-gpu=compute_cap needs driver r510 or newer); upgrade the driver" >&2', "  exit 2", "fi",
                  f"if ! {test}; then",
                  f'  echo "error: this bundle is for target {target.name} ({wanted}); this host\'s GPU has compute '
                  'capability $CC: run the bundle of a matching target" >&2', "  exit 2", "fi"]
    if target.tensorrt_major:
        lines += ['TRT=$("$PYTHON" -c "import tensorrt; print(tensorrt.__version__)")',
                  f'if [ "${{TRT%%.*}}" != "{target.tensorrt_major}" ]; then',
                  f'  echo "error: this bundle is for TensorRT {target.tensorrt_major}.x (target {target.name}); this '
                  'host has TensorRT $TRT: engines of one major do not run on the other" >&2', "  exit 2", "fi"]
    return "\n".join(lines) + ("\n" if lines else "")


def _tensorrt_checks(target: Target, arch: str) -> str:
    """The host's TensorRT against the target's pinned version; without a pin, against the plans already in the
    repository (a Triton server loads one TensorRT version: plans of another would not load beside them)."""
    lines = ['TRT=$("$PYTHON" -c "import tensorrt; print(tensorrt.__version__)")']
    if target.tensorrt_version:
        wheel = "tensorrt-cu13" if target.tensorrt_version.startswith("11") else "tensorrt-cu12 (or -cu13)"
        lines += [f'case "$TRT" in {target.tensorrt_version}|{target.tensorrt_version}.*) ;; *)',
                  f'  echo "error: target {target.name} runs TensorRT {target.tensorrt_version} (a plan loads only in '
                  f'the version that built it); this host has TensorRT $TRT: pip install '
                  f"'{wheel.split()[0]}=={target.tensorrt_version}'\" >&2", "  exit 2;;", "esac"]
    elif not target.version_compatible:
        lines += [f'"$PYTHON" - "$REPO" "$TRT" {arch} <<\'PY\' || exit 2',
                  "import glob, json, os, sys",
                  "repo, host, arch = sys.argv[1:4]",
                  "for path in sorted(glob.glob(os.path.join(repo, arch + '_trt_*', '1', '*.plan.json'))):",
                  "    built = json.load(open(path)).get('engine', {}).get('tensorrt')",
                  "    if built and built != host:",
                  "        print(f'error: {path} was built with TensorRT {built}; this host has TensorRT {host}: a "
                  "Triton server loads one TensorRT version, so build every target with it (or pin "
                  "tensorrt_version / version_compatible in targets.toml)', file=sys.stderr)",
                  "        sys.exit(2)",
                  "PY",
                  'echo "building with TensorRT $TRT: serve these plans with the Triton release that ships TensorRT '
                  '$TRT (or pin triton_release / tensorrt_version in targets.toml)" >&2']
    return "\n".join(lines) + "\n"


def _build_lines(target: Target, arch: str, onnx_name: str, precision: str, weights: str) -> str:
    """Build one plan into the repository, check it against the eager model (the carried weights), then put the
    plan model's config in place: a model folder appears in the repository only with its plan."""
    model = plan_model_name(arch, precision)
    plan = f'"$REPO"/{model}/1/{target.plan_name()}'
    build = ["build", f"onnx/{onnx_name}", "--profile", target.batch, "--workspace", f"{target.workspace_gib:g}",
             "--hardware-compat", target.hardware_compat, "--timing-cache", "timing.cache",
             *(["--version-compatible"] if target.version_compatible else [])]
    return (f'mkdir -p "$REPO"/{model}/1\n'
            f'"$PYTHON" -m resnest_deploy {" ".join(shlex.quote(a) for a in build)} --output {plan}\n'
            f'"$PYTHON" -m resnest_deploy parity {plan} --batch {target.profile[1]} --weights {shlex.quote(weights)} '
            f'${{DATA:+--data "$DATA"}} --output reports/{precision}.parity.json || FAILED=1\n'
            f'cp triton/{model}/* "$REPO"/{model}/\n')


def write_bundle(folder: Path, target: Target, arch: str, onnx_files: dict[str, Path], weights: Path,
                 models: list[ModelEntry], labels: list[str] | None) -> Path:
    """Write ``folder`` for ``target``; ``onnx_files`` maps each of its precisions to the ONNX file, ``weights`` is
    the eager model's exact weights (the checkpoint, or a random-init model's saved as safetensors) for parity on
    the GPU host, ``models`` the target's plan models as the repository will hold them.

    Returns:
        The ``build.sh`` path.

    Raises:
        OutputError: The folder cannot be written.
    """
    ensure_writable_dir(folder)
    for precision in target.precisions:
        link_or_copy(onnx_files[precision], folder / "onnx" / onnx_files[precision].name)
    carried = f"weights/{weights.name}"
    link_or_copy(weights, folder / carried)
    for entry in models:
        write_text_atomic(folder / "triton" / entry.name / "config.pbtxt", render_config(entry))
        if labels and entry.label_file:
            write_text_atomic(folder / "triton" / entry.name / entry.label_file, "\n".join(labels) + "\n")
    copy_tool(folder / "tool")
    (folder / "reports").mkdir(exist_ok=True)
    body = "".join(_build_lines(target, arch, onnx_files[p].name, p, carried) for p in target.precisions)
    pinned = (f"TensorRT {target.tensorrt_version}" if target.tensorrt_version else
              "the host's TensorRT (its version is recorded in each plan's manifest)")
    text = (script_preamble()
            + f"# Engines of {arch} for target {target.name}: {', '.join(target.precisions)}, built with {pinned}"
              f"{', version-compatible' if target.version_compatible else ''}.\n"
              f"# Written by resnest-deploy {__version__}. REPOSITORY=DIR chooses the Triton model repository.\n"
            + _target_checks(target)
            + 'REPO="${REPOSITORY:-}"\n'
              'if [ -z "$REPO" ]; then\n'
              '  if [ -d ../../model_repository ]; then REPO=../../model_repository; else REPO=model_repository; fi\n'
              'fi\nFAILED=0\n'
            + _tensorrt_checks(target, arch) + body
            + 'echo "engines and their models in $REPO; parity reports in reports/"\nexit $FAILED\n')
    script = write_text_atomic(folder / SCRIPT, text)
    make_executable(script)
    write_text_atomic(folder / "target.json", json.dumps({**target.to_dict(), "arch": arch}, indent=2) + "\n")
    return script
