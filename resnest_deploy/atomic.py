"""Atomic file writes: write to a temporary name in the target's folder, rename on success.

A crash, an exception, a full disk or a kill midway never leaves a half-written file under the final name, and
never leaves the temporary file behind either. Files that belong together (an artifact and its manifest, a
report's JSON and Markdown) are written as one group: every temporary is complete before the first rename, so a
failure leaves the earlier pair exactly as it was. Temporary names start with a dot and end in ``.tmp``, cut to
fit the file system's name limit. Files get the permissions a plain ``open(path, "w")`` would give under the
user's umask (a server running as another user must be able to read them); ``tempfile.mkstemp`` would make them
0600.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError
from .interrupts import producing
from .paths import check_output, name_max


def _create_exclusive(folder: Path, name: str) -> Path:
    """Create a new empty file ``folder/.<name>.<random>.tmp`` (cut to the name limit) with mode 0666 & ~umask."""
    room = name_max(folder) - len(".") - len(".123456789abc.tmp")
    for _ in range(100):
        path = folder / f".{name[:max(room, 1)]}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot write in {folder}: {exc.strerror or exc}") from None
        os.close(fd)
        return path
    raise OutputError(f"cannot create a temporary file in {folder}")


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_executable(path: Path) -> None:
    """Give ``path`` the execute bits a new script gets under the umask (0777 & ~umask)."""
    path.chmod(0o777 & ~current_umask())


def ensure_writable_dir(folder: Path) -> None:
    """Create ``folder`` if needed and check a file can be created in it (at write time; checks made before any
    work use :func:`resnest_deploy.paths.check_output`, which creates nothing).

    Raises:
        OutputError: The folder cannot be created or written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write to {folder}: it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = _create_exclusive(folder, "write-test")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to {folder}: {exc.strerror or exc}") from None


@contextmanager
def atomic_paths(*targets: str | os.PathLike[str]) -> Iterator[tuple[Path, ...]]:
    """Yield one temporary path per target (each next to its target); when the block succeeds, rename them all
    into place, else remove them all. A failing write (full disk, file-size limit, vanished folder) becomes one
    :class:`OutputError` naming the target, with nothing left behind.

    Raises:
        OutputError: A target's folder cannot be written, or a target is an existing folder.
    """
    paths = [Path(t) for t in targets]
    for path in paths:
        check_output(path)
    temps: list[Path] = []
    created = _missing_folders(paths)
    done = False
    with producing(paths[0]):
        try:
            for path in paths:
                ensure_writable_dir(path.parent)
                temps.append(_create_exclusive(path.parent, path.name))
            yield tuple(temps)
            for tmp, path in zip(temps, paths):
                os.replace(tmp, path)
            done = True
        except OSError as exc:
            target = next((p for t, p in zip(temps, paths) if exc.filename in (str(t), str(p))), paths[0])
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        finally:
            for tmp in temps:
                tmp.unlink(missing_ok=True)
            if not done:
                _remove_empty(created)


def _missing_folders(paths: list[Path]) -> list[Path]:
    """The folders above ``paths`` that do not exist yet, deepest first (a failed write removes them again)."""
    missing: list[Path] = []
    for path in paths:
        folder = Path(os.path.abspath(path.parent))
        while not os.path.lexists(folder) and folder not in missing:
            missing.append(folder)
            folder = folder.parent
    return sorted(missing, key=lambda p: len(p.parts), reverse=True)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty (or already gone): it holds something else now


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it to ``target`` when the block succeeds (see
    :func:`atomic_paths`)."""
    with atomic_paths(target) as (tmp,):
        yield tmp


def write_text_atomic(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``target`` atomically; returns the target path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_texts_atomic(files: dict[Path, str]) -> None:
    """Write several text files as one group (all of them, or none)."""
    with atomic_paths(*files) as temps:
        for tmp, text in zip(temps, files.values()):
            tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically; returns the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)
