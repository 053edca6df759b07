"""Atomic file writes: write to a temporary name in the target's folder, rename on success.

A crash, an exception or a kill midway never leaves a half-written file under the final name. Temporary names
start with a dot and end in ``.tmp`` so that they are easy to spot and clean. Files get the permissions a plain
``open(path, "w")`` would give under the user's umask (a server running as another user must be able to read
them); ``tempfile.mkstemp`` would make them 0600.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError
from .interrupts import producing


def _create_exclusive(folder: Path, prefix: str) -> Path:
    """Create a new empty file ``folder/prefix<random>.tmp`` with mode 0666 & ~umask."""
    for _ in range(100):
        path = folder / f"{prefix}{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
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
    """Create ``folder`` if needed and check a file can be created in it.

    Raises:
        OutputError: The folder cannot be created or written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write to {folder}: it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = _create_exclusive(folder, ".write-test.")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to {folder}: {exc.strerror or exc}") from None


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it to ``target`` when the block succeeds.

    Raises:
        OutputError: The target's folder cannot be written, or the target is an existing folder.
    """
    target = Path(target)
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is an existing folder")
    ensure_writable_dir(target.parent)
    with producing(target):
        tmp = _create_exclusive(target.parent, f".{target.name}.")
        try:
            yield tmp
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``target`` atomically; returns the target path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically; returns the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)

