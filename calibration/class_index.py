"""Mapping class folders of a labelled image tree to the model's class indices, for parity's accuracy and
quantize's accuracy budget.

``--class-index FILE`` takes the layouts people have at hand:

- JSON object name -> index: ``{"n01440764": 0, ...}``;
- JSON object index -> name, or index -> [synset, label] as published with Keras
  (``imagenet_class_index.json``: ``{"0": ["n01440764", "tench"], ...}``);
- JSON list of names, or of [synset, label] pairs, in class order;
- text, one class per line in class order, the folder name first (``LOC_synset_mapping.txt``:
  ``n01440764 tench, Tinca tinca``), or just names.

Every name on an entry (synset and label) maps to its index, so folders may be named either way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from resnest_deploy.errors import ConfigError
from resnest_deploy.paths import existing_file

from .images import SPLIT_NAMES, ImageSet

_WNID = re.compile(r"^n\d{8}$")  # an ImageNet synset folder


def read_class_index(path: Path, num_classes: int) -> dict[str, int]:
    """Folder name -> class index, from any of the layouts above.

    Raises:
        ConfigError: Missing or unreadable file, an unknown layout, or an index outside ``[0, num_classes)``.
    """
    path = existing_file(path, ConfigError, "class index file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--class-index {path}: not a text file ({type(exc).__name__})") from None
    if text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"--class-index {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        mapping = _from_json(data, path)
    else:
        mapping = {}
        for i, line in enumerate(line for line in text.splitlines() if line.strip()):
            mapping.setdefault(line.split()[0], i)
            mapping.setdefault(line.strip(), i)
    if not mapping:
        raise ConfigError(f"--class-index {path}: holds no classes")
    bad = sorted({i for i in mapping.values() if not 0 <= i < num_classes})
    if bad:
        raise ConfigError(f"--class-index {path}: index {bad[0]} is outside the model's {num_classes} classes "
                          f"(0..{num_classes - 1})")
    return mapping


def _names(entry: Any, path: Path) -> list[str]:
    if isinstance(entry, str):
        return [entry]
    if isinstance(entry, list) and entry and all(isinstance(e, str) for e in entry):
        return list(entry)
    raise ConfigError(f"--class-index {path}: entries must be names or lists of names, got {entry!r:.60}")


def _index(value: Any, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().lstrip("-").isdigit():
        raise ConfigError(f"--class-index {path}: {value!r:.40} is not a class index")
    return int(value)


def _from_json(data: Any, path: Path) -> dict[str, int]:
    mapping: dict[str, int] = {}
    if isinstance(data, list):
        for i, entry in enumerate(data):
            for name in _names(entry, path):
                mapping.setdefault(name, i)
        return mapping
    if not isinstance(data, dict):
        raise ConfigError(f"--class-index {path}: expected a JSON object or list")
    values = list(data.values())
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return {str(k): int(v) for k, v in data.items()}  # name -> index
    for key, entry in data.items():  # index -> name(s)
        index = _index(key, path)
        for name in _names(entry, path):
            mapping.setdefault(name, index)
    return mapping


def class_mapping(images: ImageSet, num_classes: int, index_file: Path | None) -> tuple[dict[str, int] | None, str]:
    """Folder name -> class index, and how it was decided (or why accuracy is not reported).

    Raises:
        ConfigError: The class index file is unreadable, maps outside the model's classes, or lacks folders.
    """
    if index_file is not None:
        mapping = read_class_index(index_file, num_classes)
        missing = sorted(set(images.classes) - set(mapping))
        if missing:
            raise ConfigError(f"--class-index {index_file} has no index for folders {missing[:5]}")
        if not images.is_class_tree:
            raise ConfigError(f"--class-index given, but {images.root} is not a class-per-subfolder tree")
        return mapping, f"class index file {index_file.name}"
    if not images.is_class_tree:
        return None, "not a class-per-subfolder tree"
    if set(images.classes) <= SPLIT_NAMES:
        return None, (f"{images.root} is a dataset root split into {', '.join(images.classes)}, not a folder of "
                      f"classes; give one split, e.g. --data {images.root / images.classes[-1]}")
    if len(images.classes) == num_classes:
        kind = "ImageNet synset order" if all(_WNID.match(c) for c in images.classes) else "sorted folder names"
        return {c: i for i, c in enumerate(images.classes)}, kind
    return None, (f"{len(images.classes)} class folders for a {num_classes}-class model; pass --class-index to map "
                  "them")
