"""One name and one grammar per concept across every command, metavars that say the format, and defaults that
agree between commands, checked by walking the Typer app's own parameters (a new option is held to the same
rules without anyone adding a case)."""

from __future__ import annotations

import re

import typer.main

from resnest_deploy.cli.app import RENAMED, app
from tests.conftest import run_cli

COMMANDS = typer.main.get_command(app).commands
# Concepts that once had several spellings: the one name each has now, and the names it must never have again.
ONE_NAME = {"where a command writes": ("--output", {"--out", "--report", "--dir"}),
            "the runtime a graph is made for": ("--runtime", {"--target"}),
            "an engine's optimization profile": ("--profile", set()),
            "the batch sizes timed": ("--bench-batch", set()),
            "what the CPU model computes": ("--cpu-precision", {"--cpu-model"})}
PYTHON_TYPES = re.compile(r"^<|\b(int|float|str|path|list|bool|range)\b|\[")


def _options():
    for name, command in COMMANDS.items():
        for param in command.params:
            if getattr(param, "hidden", False) or param.name == "help":
                continue
            yield name, param


def test_no_metavar_shows_a_python_type():
    bad = []
    for name, param in _options():
        if getattr(param, "is_flag", False) or getattr(param, "secondary_opts", None):
            continue
        metavar = param.metavar
        if not metavar or PYTHON_TYPES.search(metavar):
            bad.append(f"{name} {param.opts[0]}: {metavar!r}")
    assert not bad, bad


def test_one_name_per_concept():
    names = {opt for _, p in _options() for opt in p.opts}
    for concept, (name, retired) in ONE_NAME.items():
        assert name in names, concept
        assert not names & retired, (concept, names & retired)
    # --batch means one thing: images per inference (parity); the other meanings have their own names.
    users = [c for c, p in _options() if "--batch" in p.opts]
    assert users == ["parity"], users


def test_a_concept_has_one_default_everywhere():
    defaults: dict[str, set[str]] = {}
    for _, param in _options():
        if param.opts[0].startswith("--") and param.default is not None and not callable(param.default):
            defaults.setdefault(param.opts[0], set()).add(str(getattr(param.default, "value", param.default)))
    shared = ("--samples", "--iters", "--warmup", "--seed", "--calib-size", "--bench-batch", "--profile",
              "--method")
    drift = {opt: values for opt, values in defaults.items() if opt in shared and len(values) > 1}
    assert not drift, drift


def test_old_spellings_still_work_for_one_release_with_a_note(tmp_path):
    for command, renames in RENAMED.items():
        assert command in COMMANDS
        for old, new in renames.items():
            assert any(new in p.opts for p in COMMANDS[command].params), (command, new)
    result = run_cli("deploy", "--arch", "resnet18", "--precisions", "fp32", "--out", str(tmp_path / "run"),
                     "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "note: --out is now --output (the old name works until the next release)"
    assert str(tmp_path / "run") in result.stdout.replace("\n", "")


def test_help_explains_every_hardware_compatibility_level():
    text = run_cli("build", "--help", env={"COLUMNS": "400"}).stdout
    for level in ("none", "same-cc", "ampere+"):
        assert re.search(rf"{re.escape(level)} \(", text), level
