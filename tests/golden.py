"""Digests of what `deploy` writes, to compare two versions of the code on the same run.

Artifacts are compared by content (the ONNX with its library-versions record removed, since that names the
installed packages, not what the code made); configs, scripts and target records byte for byte. Manifests and
reports are left out: they carry timings and dates.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import onnx

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
# The packages whose versions decide the bytes of an export: a golden file made under others is not comparable.
PINNED = ("torch", "onnx", "onnxruntime", "onnxscript", "numpy")
_COMPARED = ("*.pbtxt", "labels.txt", "build.sh", "target.json")


def versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in PINNED}


def onnx_digest(path: Path) -> str:
    """SHA-256 of an ONNX file's graph and metadata, without the versions record."""
    model = onnx.load(str(path), load_external_data=False)
    kept = [p for p in model.metadata_props if p.key != "resnest_deploy.versions"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def run_digest(run_dir: Path) -> dict[str, str]:
    """``relative path -> digest`` of every artifact, config, script and target record of a run folder."""
    digests = {}
    for path in sorted(run_dir.rglob("*")):
        relative = path.relative_to(run_dir)
        if not path.is_file() or "tool" in relative.parts:
            continue
        if path.suffix == ".onnx":
            digests[str(relative)] = onnx_digest(path)
        elif any(path.match(pattern) for pattern in _COMPARED):
            digests[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def load(name: str) -> dict:
    return json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))


def save(name: str, command: list[str], digests: dict[str, str]) -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    body = {"command": command, "versions": versions(), "files": digests}
    (GOLDEN / f"{name}.json").write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def served_copy_of(served: Path, source: Path) -> bool:
    """Whether the repository's ONNX file is ``source``'s graph, saved at IR version 9 for Triton."""
    a, b = onnx.load(str(served)), onnx.load(str(source))
    return a.ir_version == 9 and a.graph.SerializeToString() == b.graph.SerializeToString()
