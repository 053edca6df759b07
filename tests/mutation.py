"""`make mutation`: mutmut over the modules that only the TensorRT double and CPU tests guard.

mutmut names a mutant by its file's path and expects that path to be the module's import name, but `exporters/`
and `calibration/` install as `resnest_deploy.exporters` / `resnest_deploy.calibration`. So this script stages a
tree with the import layout (`.cache/mutation/resnest_deploy/{exporters,calibration}`, the tests, pyproject.toml
with its `[tool.mutmut]` section), runs `mutmut run` there, and prints the result per module: mutants, killed,
survived, and the surviving mutants' names (`mutmut show NAME` in `.cache/mutation` shows one). `--doc` writes the
table into docs/testing.md's generated section. Not part of `make test`: it runs each mutant against the tests
that reach it, which takes tens of minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / ".cache" / "mutation"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
EXPLAINED = ROOT / "tests" / "mutation_survivors.toml"
REQUIRED_KILL_RATE = 0.85


def stage_tree() -> None:
    """Copy the sources in their import layout and the tests; mutmut's own results (mutants/) start afresh."""
    if STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    shutil.copytree(ROOT / "resnest_deploy", STAGE / "resnest_deploy", ignore=IGNORE, symlinks=False)
    for sub in ("exporters", "calibration"):
        target = STAGE / "resnest_deploy" / sub
        if target.is_symlink() or target.exists():
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        shutil.copytree(ROOT / sub, target, ignore=IGNORE)
    shutil.copytree(ROOT / "tests", STAGE / "tests", ignore=IGNORE)
    shutil.copytree(ROOT / "docs", STAGE / "docs", ignore=IGNORE)
    for name in ("pyproject.toml", "Makefile", "README.md"):
        shutil.copy2(ROOT / name, STAGE / name)


def module_of(meta: Path) -> str:
    """`mutants/resnest_deploy/metrics.py.meta` -> the repository path of the module it mutated."""
    rel = meta.relative_to(STAGE / "mutants").as_posix().removesuffix(".meta")
    for sub in ("exporters", "calibration"):
        prefix = f"resnest_deploy/{sub}/"
        if rel.startswith(prefix):
            return sub + "/" + rel[len(prefix):]
    return rel


def collect() -> dict[str, Counter]:
    from mutmut.stats import status_by_exit_code

    results: dict[str, Counter] = {}
    survivors: dict[str, list[str]] = {}
    for meta in sorted((STAGE / "mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        module = module_of(meta)
        counts = results.setdefault(module, Counter())
        for name, code in codes.items():
            status = status_by_exit_code[code]
            counts[status] += 1
            if status not in ("killed", "timeout", "caught by type check"):
                survivors.setdefault(module, []).append(f"{name} ({status})")
    (STAGE / "survivors.json").write_text(json.dumps(survivors, indent=1))
    return results


def surviving() -> list[str]:
    """Names of the mutants no test told apart (survived, or reached by no test of the selection)."""
    names = json.loads((STAGE / "survivors.json").read_text())
    return [n.split(" (")[0] for entries in names.values() for n in entries
            if n.endswith(("(survived)", "(no tests)"))]


def mutant_diff(name: str) -> str:
    """``old`` -> ``new``: the changed line of one mutant, from ``mutmut show``."""
    shown = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=STAGE, capture_output=True,
                           text=True, check=False).stdout.splitlines()
    old = [line[1:].strip() for line in shown if line.startswith("-") and not line.startswith("---")]
    new = [line[1:].strip() for line in shown if line.startswith("+") and not line.startswith("+++")]
    return f"`{' '.join(old)[:110]}` -> `{' '.join(new)[:110]}`"


def explanations(names: list[str]) -> tuple[str, list[str]]:
    """The survivors grouped by their reason in EXPLAINED, and the names that have none."""
    import tomllib

    data = tomllib.loads(EXPLAINED.read_text(encoding="utf-8"))
    reasons, assigned = data["reasons"], data["survivors"]
    missing = [n for n in names if assigned.get(n) not in reasons]
    lines = []
    for key, why in reasons.items():
        members = [n for n in names if assigned.get(n) == key]
        if not members:
            continue
        lines += ["", f"**{key}** ({len(members)}): {why}", ""]
        lines += [f"- {n.split('.', 1)[1].replace('ǁ', '.')}: {mutant_diff(n)}" for n in members]
    return "\n".join(lines), missing


def table(results: dict[str, Counter], seconds: float) -> str:
    rows = ["| module | mutants | killed | survived | no tests | kill rate |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    total = Counter()
    for module, counts in results.items():
        total.update(counts)
        rows.append(row(module, counts))
    rows.append(row("**all**", total))
    import mutmut

    rows.append("")
    rows.append(f"`make mutation` (mutmut {mutmut.__version__}), {seconds / 60:.0f} min on this machine; timeouts count"
                " as killed.")
    return "\n".join(rows)


def _killed(counts: Counter) -> int:
    return counts["killed"] + counts["timeout"] + counts["caught by type check"]


def row(module: str, counts: Counter) -> str:
    n = sum(counts.values())
    killed = _killed(counts)
    rate = f"{100 * killed / n:.1f}%" if n else "-"
    other = n - killed - counts["survived"] - counts["no tests"]
    extra = f" (+{other} other)" if other else ""
    return f"| {module} | {n} | {killed} | {counts['survived']}{extra} | {counts['no tests']} | {rate} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--doc", action="store_true", help="write the table into docs/testing.md")
    parser.add_argument("--report-only", action="store_true", help="summarise the last run without running")
    parser.add_argument("mutants", nargs="*", help="mutant names to rerun (as `mutmut run` takes them)")
    args = parser.parse_args()
    if (args.report_only or args.mutants) and not (STAGE / "mutants").is_dir():
        print(f"no mutation run in {STAGE} to {'report on' if args.report_only else 'rerun'}: run `make mutation` "
              "first", file=sys.stderr)
        return 2
    started = time.monotonic()
    if not args.report_only:
        if not args.mutants:
            stage_tree()
        else:  # rerun named mutants against the tests as they are now
            for tests in (STAGE / "tests", STAGE / "mutants" / "tests"):
                shutil.rmtree(tests, ignore_errors=True)
                shutil.copytree(ROOT / "tests", tests, ignore=IGNORE)
        env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", RESNEST_DEPLOY_TEST_EXPORTS="memo")
        command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children), *args.mutants]
        code = subprocess.run(command, cwd=STAGE, env=env, check=False).returncode
        if code != 0:
            print(f"mutmut run exited {code}", file=sys.stderr)
            return code
        if not args.mutants:
            (STAGE / "run.json").write_text(json.dumps({"seconds": time.monotonic() - started}))
    results = collect()
    seconds = json.loads((STAGE / "run.json").read_text())["seconds"] if (STAGE / "run.json").exists() else 0.0
    text = table(results, seconds)
    print(text)
    names = surviving()
    grouped, missing = explanations(names)
    total = sum(sum(c.values()) for c in results.values())
    rate = sum(_killed(c) for c in results.values()) / total if total else 0.0
    if args.doc:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from doc_sections import write_section

        body = (text + "\n\nEvery survivor and why no test tells it apart (`tests/mutation_survivors.toml`):\n"
                + grouped)
        write_section(ROOT / "docs" / "testing.md", "mutation", body, "Mutation testing")
    print(f"survivors: {STAGE / 'survivors.json'}; show one with `cd {STAGE} && mutmut show NAME`")
    if missing:
        print(f"{len(missing)} surviving mutants have no explanation in {EXPLAINED.name}:", *missing, sep="\n  ")
    if rate < REQUIRED_KILL_RATE:
        print(f"kill rate {rate:.1%} is below {REQUIRED_KILL_RATE:.0%}")
    return 1 if missing or rate < REQUIRED_KILL_RATE else 0


if __name__ == "__main__":
    sys.exit(main())
