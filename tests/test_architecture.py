"""The dependency rules of the design, checked on the source: layers point one way, heavy imports stay put."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Source folders and the import names they install under (exporters/ and calibration/ sit beside
# resnest_deploy/ in the tree and install as resnest_deploy.exporters and resnest_deploy.calibration).
PACKAGES = {"resnest_deploy": "resnest_deploy", "exporters": "resnest_deploy.exporters",
            "calibration": "resnest_deploy.calibration"}
# Lower layers never import higher ones: cli -> deploy -> reports/bench/parity -> runners -> exporters/calibration ->
# models (with the small shared modules beside models: errors, atomic, hashing, metrics, checks, ...).
LAYERS = {
    "resnest_deploy": 0, "resnest_deploy.models": 0,
    "resnest_deploy.exporters": 1, "resnest_deploy.calibration": 1, "resnest_deploy.runners": 2,
    "resnest_deploy.parity": 3, "resnest_deploy.bench": 3, "resnest_deploy.reports": 3,
    "resnest_deploy.deploy": 4, "resnest_deploy.cli": 5, "resnest_deploy.__main__": 5,
}
STDLIB = set(sys.stdlib_module_names)


def _layer(module: str) -> int | None:
    best = max((name for name in LAYERS if module == name or module.startswith(name + ".")), key=len, default=None)
    return LAYERS[best] if best else None


def _modules():
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join([package, *(parts[:-1] if parts[-1] == "__init__" else parts)])
            yield name, path, path.name == "__init__.py"


def _imports(name: str, path: Path, is_package: bool) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                found.append(".".join(base + ([node.module] if node.module else [])))
            else:
                found.append(node.module)
    return found


def test_layers_point_one_way():
    problems = []
    for name, path, is_package in _modules():
        own = _layer(name)
        for target in _imports(name, path, is_package):
            other = _layer(target)
            if own is not None and other is not None and other > own:
                problems.append(f"{name} imports {target}")
    assert not problems, problems


def test_models_import_only_torch():
    allowed = {"torch", "safetensors", "resnest_deploy", "__future__"}
    for name, path, is_package in _modules():
        if name.startswith("resnest_deploy.models"):
            for target in _imports(name, path, is_package):
                top = target.split(".")[0]
                assert top in allowed or top in STDLIB, f"{name} imports {target}"


def test_nothing_imports_the_cli_and_tensorrt_stays_out():
    for name, path, is_package in _modules():
        imports = _imports(name, path, is_package)
        if not name.startswith("resnest_deploy.cli") and name != "resnest_deploy.__main__":
            assert not any(t.startswith("resnest_deploy.cli") for t in imports), name
        # Only the TensorRT builder and runner modules may import tensorrt.
        if not (name.startswith("resnest_deploy.exporters.tensorrt") or name.startswith("resnest_deploy.runners.trt")):
            assert "tensorrt" not in {t.split(".")[0] for t in imports}, name


def test_no_generic_top_level_import_names():
    """exporters/ and calibration/ are imported only under the product's namespace, never as top-level names."""
    for name, path, is_package in _modules():
        tops = {t.split(".")[0] for t in _imports(name, path, is_package)}
        assert not tops & {"exporters", "calibration"}, f"{name} imports a generic top-level name"


def _loaded_after(statement: str) -> set[str]:
    """Heavy modules present after running ``statement`` in a fresh interpreter."""
    code = (f"import sys; {statement}; "
            "print(' '.join(m for m in ('torch', 'onnxruntime', 'tensorrt', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_graph_checks_and_build_planning_do_not_load_torch():
    """inspect and build only need the graph and its metadata: no torch, onnxruntime or tensorrt."""
    loaded = _loaded_after("import resnest_deploy.exporters.graph, resnest_deploy.exporters.tensorrt_plan, "
                           "resnest_deploy.exporters.build_script, resnest_deploy.exporters.tensorrt_builder")
    assert not loaded, loaded


def test_cli_help_loads_no_heavy_library():
    assert not _loaded_after("import resnest_deploy.cli.app")
