"""The product's docs stand alone: every link points at a file (and heading) inside the repository, nothing
names a path outside it, and measured speeds are quoted in one place (docs/benchmarks.md, where the benchmark
scripts write them) while other docs link there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SPEED = re.compile(r"\b\d+\.\d+x\b|\b\d+(\.\d+)? ?ms\b")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")}


def test_links_point_inside_the_repository_and_at_headings_that_exist():
    problems = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for target in LINK.findall(text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file_part, _, anchor = target.partition("#")
            path = (doc.parent / file_part).resolve() if file_part else doc
            if ROOT not in path.parents and path != ROOT:
                problems.append(f"{doc.name}: {target} leaves the repository")
            elif not path.exists():
                problems.append(f"{doc.name}: {target} does not exist")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                problems.append(f"{doc.name}: {target} names no heading of {path.name}")
        if "../shared" in text or "/tmp/" in text:
            problems.append(f"{doc.name}: names a path outside the repository")
    assert not problems, problems


def test_measured_speeds_live_in_the_benchmarks_doc():
    problems = []
    for doc in DOCS:
        if doc.name == "benchmarks.md":
            continue
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            if SPEED.search(line):
                problems.append(f"{doc.name}:{number}: {line.strip()[:100]}")
    assert not problems, problems
