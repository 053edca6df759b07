"""What an earlier run left in a run folder and this run does not make: removed before this run's steps, so the
report, the Triton repository and the bundles only ever hold what this run made (fewer precisions, another
``--cpu-precision``, a target taken out of targets.toml).

A run folder belongs to the tool in these places only: ``onnx/``, ``reports/``, ``targets/`` and
``model_repository/``. Anything else a user put in the run folder is left alone. Plans that a bundle's build.sh
built into the repository stay as long as their model and target are still this run's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..paths import real_path
from .steps import Step
from .targets import Target
from .triton import repository_files

OWNED = ("onnx", "reports", "targets", "model_repository")


def leftovers(run_dir: Path, arch: str, steps: list[Step], targets: list[Target]) -> list[Path]:
    """Files and folders under the tool's parts of ``run_dir`` that this run neither writes nor keeps."""
    keep = {real_path(p) for s in steps for p in s.outputs}
    found: list[Path] = []
    for name in ("onnx", "reports"):
        folder = run_dir / name
        if folder.is_dir():
            found += [p for p in sorted(folder.iterdir()) if real_path(p) not in keep]
    bundles = run_dir / "targets"
    if bundles.is_dir():
        current = {t.name: t for t in targets}
        for folder in sorted(bundles.iterdir()):
            if folder.name not in current:
                found.append(folder)
            elif (folder / "onnx").is_dir():
                found += [p for p in sorted((folder / "onnx").iterdir()) if real_path(p) not in keep]
    found += _repository_leftovers(run_dir / "model_repository", repository_files(arch, targets))
    return found


def _repository_leftovers(root: Path, models: dict[str, set[str]]) -> list[Path]:
    """Model folders this run does not serve, and files in the served ones' version folders it does not make
    (plans of targets no longer in the run, with their manifests)."""
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        if folder.name not in models:
            found.append(folder)
            continue
        wanted = models[folder.name] | {f"{name}.json" for name in models[folder.name]}
        version = folder / "1"
        if version.is_dir():
            found += [p for p in sorted(version.iterdir()) if p.name not in wanted]
    return found


def remove(paths: list[Path]) -> None:
    """Delete files, links and folders (folders with everything in them)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
