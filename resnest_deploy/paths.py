"""Naming the files a command reads and writes: inputs that must be files, outputs that may be folders, and
reports that come in pairs (JSON + Markdown, HTML + Markdown)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ResnestDeployError


def existing_file(path: str | os.PathLike[str], error: type[ResnestDeployError], what: str = "file") -> Path:
    """``path`` as a Path, after checking it names an existing file (not a folder).

    Raises:
        error: The path is a folder or does not exist (the message names ``what`` was expected).
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder, not {'an' if what[0] in 'aeiouAEIOU' else 'a'} {what}")
    if not path.is_file():
        raise error(f"{path}: no such {what}")
    return path


def output_file(path: str | os.PathLike[str], default_name: str) -> Path:
    """Where to write a file given as ``--output PATH``: an existing folder means ``PATH/default_name``."""
    path = Path(path)
    return path / default_name if path.is_dir() else path


def sibling_paths(path: str | os.PathLike[str], suffixes: tuple[str, ...]) -> tuple[Path, ...]:
    """One path per suffix, sharing a stem: ``--report r.md`` -> (r.json, r.md) for (".json", ".md").

    Whichever of ``suffixes`` the given path ends in is replaced, so a Markdown-named path never makes the JSON
    (or HTML) overwrite the Markdown it was meant to sit beside; any other name gets each suffix appended.
    """
    path = Path(path)
    stem = path.name
    for suffix in suffixes:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break
    return tuple(path.with_name(stem + suffix) for suffix in suffixes)


def report_pair(path: str | os.PathLike[str] | None, default: Path, suffixes: tuple[str, str]) -> tuple[Path, Path]:
    """Where a pair of reports goes, checked writable before any work starts.

    ``path`` may be either file of the pair (``r.json`` or ``r.md``), a stem, or an existing folder (``default``'s
    name inside it); None means ``default``.

    Raises:
        OutputError: The folder cannot be written, or a report path is an existing folder.
    """
    from .atomic import ensure_writable_dir
    from .errors import OutputError

    target = Path(path) if path is not None else default
    if target.is_dir():
        target = target / default.name
    first, second = sibling_paths(target, suffixes)
    for candidate in (first, second):
        if candidate.is_dir():
            raise OutputError(f"cannot write {candidate}: it is an existing folder")
    ensure_writable_dir(first.parent)
    return first, second
