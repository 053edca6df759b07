"""A target's build bundle (``targets/<name>/``): what a GPU host of that target needs to make its engines.

The folder holds the ONNX files of the target's precisions, this tool's code, a timing cache slot and
``build.sh``, which first checks the host against the target (compute capability and TensorRT major: one line and
exit 2 on a mismatch), then builds each precision straight into the Triton repository's layout
(``<repository>/<model>/1/model.sm<XY>.plan``, with the engine's manifest beside it) and checks it with
``parity``, judged by what the artifact is (its precision and provenance). The repository is ``$REPOSITORY``, else
the run folder's ``model_repository`` two levels up when the bundle is still in place, else one inside the bundle.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from .. import __version__
from ..atomic import ensure_writable_dir, make_executable, write_text_atomic
from resnest_deploy.exporters.build_script import copy_tool, script_preamble
from resnest_deploy.exporters.metadata import ArtifactMeta
from .targets import Target
from .triton import link_or_copy, plan_model_name

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
        lines += ['CC=$("$PYTHON" -c "import torch; print(\'%d.%d\' % torch.cuda.get_device_capability(0))")',
                  f"if ! {test}; then",
                  f'  echo "error: this bundle is for target {target.name} ({wanted}); this host\'s GPU has compute '
                  'capability $CC: run the bundle of a matching target" >&2', "  exit 2", "fi"]
    if target.tensorrt_major:
        lines += ['TRT=$("$PYTHON" -c "import tensorrt; print(tensorrt.__version__)")',
                  f'if [ "${{TRT%%.*}}" != "{target.tensorrt_major}" ]; then',
                  f'  echo "error: this bundle is for TensorRT {target.tensorrt_major}.x (target {target.name}); this '
                  'host has TensorRT $TRT: engines of one major do not run on the other" >&2', "  exit 2", "fi"]
    return "\n".join(lines) + ("\n" if lines else "")


def _build_lines(target: Target, arch: str, onnx_name: str, precision: str, checkpoint: bool) -> str:
    model = plan_model_name(arch, precision)
    plan = f'"$REPO"/{model}/1/{target.plan_name()}'
    build = ["build", f"onnx/{onnx_name}", "--batch", target.batch, "--workspace", f"{target.workspace_gib:g}",
             "--hardware-compat", target.hardware_compat, "--timing-cache", "timing.cache"]
    weights = ' ${WEIGHTS:+--weights "$WEIGHTS"}' if checkpoint else ""
    return (f'mkdir -p "$REPO"/{model}/1\n'
            f'"$PYTHON" -m resnest_deploy {" ".join(shlex.quote(a) for a in build)} --output {plan}\n'
            f'if [ "$SKIP_PARITY" = 0 ]; then\n'
            f'  "$PYTHON" -m resnest_deploy parity {plan} --batch {target.profile[1]}{weights} '
            f'${{DATA:+--data "$DATA"}} --report reports/{precision}.parity.json || FAILED=1\n'
            f"fi\n")


def write_bundle(folder: Path, target: Target, arch: str, onnx_files: dict[str, Path], meta: ArtifactMeta) -> Path:
    """Write ``folder`` for ``target``; ``onnx_files`` maps each of its precisions to the ONNX file.

    Returns:
        The ``build.sh`` path.

    Raises:
        OutputError: The folder cannot be written.
    """
    ensure_writable_dir(folder)
    for precision in target.precisions:
        link_or_copy(onnx_files[precision], folder / "onnx" / onnx_files[precision].name)
    copy_tool(folder / "tool")
    (folder / "reports").mkdir(exist_ok=True)
    checkpoint = bool(meta.weights_sha256)
    weights_check = ""
    if checkpoint:
        weights_check = (f"# The model came from a checkpoint (sha256 {meta.weights_sha256}); parity needs it:\n"
                         "#   WEIGHTS=/path/to/checkpoint bash build.sh\n"
                         'if [ -z "${WEIGHTS:-}" ]; then\n'
                         '  echo "note: WEIGHTS is not set; engines are built, parity is skipped" >&2\n'
                         "  SKIP_PARITY=1\nfi\n")
    body = "".join(_build_lines(target, arch, onnx_files[p].name, p, checkpoint) for p in target.precisions)
    text = (script_preamble()
            + f"# Engines of {arch} for target {target.name}: {', '.join(target.precisions)}.\n"
              f"# Written by resnest-deploy {__version__}. REPOSITORY=DIR chooses the Triton model repository.\n"
            + _target_checks(target)
            + 'REPO="${REPOSITORY:-}"\n'
              'if [ -z "$REPO" ]; then\n'
              '  if [ -d ../../model_repository ]; then REPO=../../model_repository; else REPO=model_repository; fi\n'
              'fi\nFAILED=0\nSKIP_PARITY=0\n'
            + weights_check + body
            + 'echo "engines in $REPO; parity reports in reports/"\nexit $FAILED\n')
    script = write_text_atomic(folder / SCRIPT, text)
    make_executable(script)
    write_text_atomic(folder / "target.json", json.dumps({**target.to_dict(), "arch": arch}, indent=2) + "\n")
    return script
