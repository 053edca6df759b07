"""Content hashes of files and of JSON-able records (checkpoints, artifacts, calibration lists, step records)."""

from __future__ import annotations

import hashlib
import json
import os

from .errors import ArtifactError


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks.

    Raises:
        ArtifactError: The path is missing, a folder, or unreadable.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def record_sha256(record: object) -> str:
    """Hex SHA-256 of a JSON-able record, independent of key order."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
