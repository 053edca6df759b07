"""Naming the files a command reads and writes: inputs that must be files, outputs that may be folders, reports
that come in pairs (JSON + Markdown, HTML + Markdown), and the checks every output passes before any work starts.

Paths are taken as users type them: ``~`` is expanded (also in ``--output=~/x``, where the shell leaves it), and
an output ending in ``/`` names a folder. An output is refused before work, creating nothing, when the file
system could not hold it: an existing folder in its place, a file where one of its folders should be, a name
longer than the file system allows, a NUL byte, or no write permission on the nearest existing folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import OutputError, ResnestDeployError


def user_path(path: str | os.PathLike[str]) -> Path:
    """A path as the user meant it: ``~`` expanded."""
    return Path(os.path.expanduser(os.fspath(path)))


def real_path(path: str | os.PathLike[str]) -> Path:
    """The absolute path with symbolic links resolved as far as they go (never an error: a symlink loop or a
    missing part is left as it is, where ``Path.resolve`` raises on a loop)."""
    return Path(os.path.realpath(user_path(path)))


def existing_file(path: str | os.PathLike[str], error: type[ResnestDeployError], what: str = "file") -> Path:
    """``path`` as a Path, after checking it names an existing regular file (not a folder, FIFO or device).

    Raises:
        error: The path is a folder, missing, or not a regular file (the message names ``what`` was expected).
    """
    if "\0" in os.fspath(path):
        raise error(f"{os.fspath(path)!r}: a path cannot hold a NUL byte")
    if not os.fspath(path).strip():
        raise error(f"an empty path is not {'an' if what[0] in 'aeiouAEIOU' else 'a'} {what}")
    path = user_path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder, not {'an' if what[0] in 'aeiouAEIOU' else 'a'} {what}")
    if not path.exists():
        raise error(f"{path}: no such {what}")
    if not path.is_file():
        raise error(f"{path}: not a regular file, so not a {what}")
    return path


def names_folder(path: str | os.PathLike[str]) -> bool:
    """Whether an output path names a folder: it exists as one, or the user ended it with ``/``."""
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or os.path.isdir(user_path(text))


def output_file(path: str | os.PathLike[str], default_name: str) -> Path:
    """Where to write a file given as ``--output PATH``: a folder (existing, or written ``PATH/``) means
    ``PATH/default_name``."""
    return user_path(path) / default_name if names_folder(path) else user_path(path)


def name_max(folder: Path) -> int:
    """The longest file name the file system under ``folder`` (or its nearest existing ancestor) takes."""
    base = _nearest_existing(folder)
    try:
        return int(os.pathconf(base, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_output(path: str | os.PathLike[str], *, folder: bool = False) -> Path:
    """Check, creating nothing, that ``path`` can be written: as a file (free, or a file to replace), or with
    ``folder`` as a folder (free, or an existing folder).

    Raises:
        OutputError: One line naming the user's path and why it cannot be written.
    """
    text = os.fspath(path)
    if "\0" in text:
        raise OutputError(f"{text!r}: a path cannot hold a NUL byte")
    if not text.strip():
        raise OutputError("an output path cannot be empty")
    path = user_path(text)
    limit = name_max(path.parent)
    for part in path.parts:
        if len(part.encode()) > limit:
            raise OutputError(f"cannot write {path}: the name {part[:40]}... is longer than the file system's "
                              f"{limit} bytes")
    if os.path.isdir(path) and not folder:
        raise OutputError(f"cannot write {path}: it is an existing folder")
    if os.path.exists(path) and not os.path.isdir(path) and folder:
        raise OutputError(f"cannot write to {path}: it is a file, not a folder")
    if os.path.islink(path) and not os.path.exists(path):
        raise OutputError(f"cannot write {path}: it is a broken symbolic link")
    base = _nearest_existing(path if folder else path.parent)
    if not os.path.isdir(base):
        raise OutputError(f"cannot write {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {base} is not writable")
    return path


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
    """Where a pair of reports goes, checked writable before any work starts (creating nothing).

    ``path`` may be either file of the pair (``r.json`` or ``r.md``), a stem, or a folder (existing, or written
    with a trailing ``/``: ``default``'s name inside it); None means ``default``.

    Raises:
        OutputError: A report path cannot be written (see :func:`check_output`).
    """
    target = output_file(path, default.name) if path is not None else default
    first, second = sibling_paths(target, suffixes)
    for candidate in (first, second):
        check_output(candidate)
    return first, second
