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
    "resnest_deploy.deploy": 4, "resnest_deploy.doctor": 4, "resnest_deploy.serving": 4, "resnest_deploy.cli": 5, "resnest_deploy.__main__": 5,
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
    loaded = _loaded_after("import resnest_deploy.exporters.graph, resnest_deploy.exporters.tensorrt_options, "
                           "resnest_deploy.exporters.build_script, resnest_deploy.exporters.tensorrt_builder")
    assert not loaded, loaded


def test_cli_help_loads_no_heavy_library():
    assert not _loaded_after("import resnest_deploy.cli.app")


def test_every_relative_import_names_code_beside_it_on_disk():
    """A relative import walks the source tree: ``from ..x.y import z`` in ``a/b/c.py`` must find ``a/x/y.py`` (or
    the package ``a/x/y/``), so that readers and tools following imports by path land on the code. Imports of the
    folders installed under another name (exporters/, calibration/) are absolute."""
    problems = []
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ImportFrom) or not node.level:
                    continue
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                parts = node.module.split(".") if node.module else []
                target = base.joinpath(*parts)
                names = [] if parts else [alias.name for alias in node.names]
                found = (target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()) if parts else \
                    all((base / f"{n}.py").is_file() or (base / n / "__init__.py").is_file()
                        or (base / "__init__.py").is_file() for n in names)
                if not found:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno} from {'.' * node.level}{node.module or ''}")
    assert not problems, problems


def _package_sources():
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, path.read_text(encoding="utf-8")


def test_modules_and_functions_stay_small():
    """No module over 400 lines, no function over 60: past those sizes a module or a function holds two ideas."""
    problems = []
    for path, text in _package_sources():
        if len(text.splitlines()) > 400:
            problems.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                                f"{node.end_lineno - node.lineno + 1} lines")
    assert not problems, problems


def test_the_vocabulary_is_defined_once():
    """Precisions, runtimes, artifact kinds, engine suffixes, the progress callback and the version record each
    have one definition (resnest_deploy/kinds.py, progress.py, versions.py); nowhere else spells the set out."""
    spelled = {frozenset({"fp32", "fp16", "int8"}): "precisions", frozenset({"tensorrt", "cpu"}): "runtimes",
               frozenset({".engine", ".plan", ".trt"}): "engine suffixes"}
    definitions: dict[str, list[str]] = {"ProgressFn": [], "library_versions": [], "ENGINE_SUFFIXES": []}
    problems = []
    for path, text in _package_sources():
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                values = frozenset(e.value for e in node.elts)
                for names, what in spelled.items():
                    if names <= values and where != "resnest_deploy/kinds.py":
                        problems.append(f"{where}:{node.lineno} spells out the {what}")
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id in definitions:
                        definitions[target.id].append(where)
            if isinstance(node, ast.FunctionDef) and node.name in definitions:
                definitions[node.name].append(where)
    assert not problems, problems
    assert {name: len(places) for name, places in definitions.items()} == dict.fromkeys(definitions, 1), definitions


def test_one_pass_fail_record_and_one_relative_error():
    """Every measured verdict is a checks.Check (no other class carries a value against a limit), and the relative
    error's floor is written only in metrics.py."""
    problems = []
    for path, text in _package_sources():
        where = str(path.relative_to(ROOT))
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name != "Check":
                names = {t.id for n in node.body if isinstance(n, ast.AnnAssign) for t in [n.target]
                         if isinstance(t, ast.Name)} | {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
                if "passed" in names and names & {"limit", "tolerance", "max_abs"}:
                    problems.append(f"{where}: {node.name} is a second pass/fail record")
        if where != "resnest_deploy/metrics.py" and ("max(1.0," in text or "max(1," in text):
            problems.append(f"{where}: writes the relative error's floor itself")
    assert not problems, problems


def test_deploy_steps_refer_to_the_steps_they_consume():
    from resnest_deploy.deploy.host import Host
    from resnest_deploy.deploy.options import DeployOptions
    from resnest_deploy.deploy.pipeline import resolve_targets
    from resnest_deploy.deploy.steps import Step
    from resnest_deploy.deploy.workflow import Workflow

    options = DeployOptions(arch="resnest14d", precisions=("fp32", "fp16"), output=ROOT / "never-written")
    host = Host(None, None)
    steps = Workflow(options, resolve_targets(options, host), host, None, None).build()
    names = [s.name for s in steps]
    assert all(isinstance(up, Step) and up in steps and steps.index(up) < steps.index(s) for s in steps
               for up in s.after), names
    by_name = dict(zip(names, steps))
    assert by_name["parity fp16"].after == (by_name["quantize fp16"],)
    assert by_name["report"].after == tuple(steps[:-1])


def test_the_oldest_python_declared_runs_the_cli():
    """requires-python's floor is the one this suite runs under (3.11: tomllib reads targets.toml), and the package
    imports and answers ``deploy --help`` there."""
    import tomllib

    floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    version = tuple(int(p) for p in floor.strip().removeprefix(">=").split("."))
    assert sys.version_info[:2] >= version, f"this Python is older than the declared floor {floor}"
    if sys.version_info[:2] != version:
        import pytest

        pytest.skip(f"the suite runs under {sys.version_info[:2]}, newer than the floor {version}")
    out = subprocess.run([sys.executable, "-m", "resnest_deploy", "deploy", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert "--arch" in out.stdout
