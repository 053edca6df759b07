"""Every tensorrt name the package uses exists in the real API of TensorRT 11.4 and 10.16.

The package has one code path for both versions, so each name is checked against both surfaces
(tests/data/tensorrt-api, copied from the research notes; plus documented names in supplement.txt). Names are
found statically: ``trt.X`` (module), ``trt.X.Y`` (enum members, class attributes), and members used on the
TensorRT objects the code holds (``builder.create_network``, ``self._context.execute_async_v3``, ...).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.tensorrt_double import VERSIONS, load_surface

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(ROOT.glob("exporters/tensorrt_*.py")) + [ROOT / "resnest_deploy" / "runners" / "trt_runner.py"]
OBJECTS = {"builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser", "config": "IBuilderConfig",
           "profile": "IOptimizationProfile", "runtime": "Runtime", "engine": "ICudaEngine",
           "context": "IExecutionContext", "inspector": "EngineInspector", "logger": "Logger"}


def _base(node: ast.expr) -> str | None:
    """``trt`` / ``self._trt`` -> "trt"; ``engine`` / ``self._engine`` -> "engine"."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr.lstrip("_")
    return None


def used_names(source: str) -> set[tuple[str, str]]:
    """(section, name) pairs: section "dir(trt)" for module attributes, else the class or enum name."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        base = _base(node.value)
        if base == "trt":
            found.add(("dir(trt)", node.attr))
        elif base in OBJECTS:
            found.add((OBJECTS[base], node.attr))
        elif isinstance(node.value, ast.Attribute) and _base(node.value.value) == "trt":
            found.add((node.value.attr, node.attr))
    return found


def missing(names: set[tuple[str, str]], version: str) -> list[str]:
    surface = load_surface(version)
    out = []
    for section, name in sorted(names):
        known = surface.names if section == "dir(trt)" else surface.members(section)
        if name not in known:
            out.append(f"{section}.{name}")
    return out


@pytest.mark.parametrize("version", sorted(VERSIONS.values()))
def test_package_uses_only_real_tensorrt_names(version):
    names = set()
    for path in MODULES:
        names |= used_names(path.read_text(encoding="utf-8"))
    assert len(names) >= 40, f"the scan found too few names to mean anything: {sorted(names)}"
    assert not missing(names, version), f"not in TensorRT {version}: {missing(names, version)}"


def test_the_scan_catches_removed_names():
    snippet = (
        "def f(trt, builder):\n"
        "    config = builder.create_builder_config()\n"
        "    config.set_flag(trt.BuilderFlag.FP16)\n"
        "    config.int8_calibrator = None\n"
        "    builder.platform_has_fast_fp16\n"
        "    trt.IInt8EntropyCalibrator2\n"
    )
    names = used_names(snippet)
    assert missing(names, VERSIONS["11"]) == ["Builder.platform_has_fast_fp16", "BuilderFlag.FP16",
                                              "IBuilderConfig.int8_calibrator", "dir(trt).IInt8EntropyCalibrator2"]
    assert missing(names, VERSIONS["10"]) == []


@pytest.mark.parametrize("version", sorted(VERSIONS.values()))
def test_names_reached_through_tables_exist(version):
    """Names the builder looks up from option tables (getattr) rather than spelling out."""
    from resnest_deploy.exporters.tensorrt_options import HardwareCompat

    surface = load_surface(version)
    assert {level.trt_name for level in HardwareCompat} <= surface.members("HardwareCompatibilityLevel")
    assert {"desc", "node_name", "node_operator", "node"} <= surface.members("ParserError")
