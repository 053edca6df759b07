"""Image folders and the architectures' eval preprocessing, shared by parity and INT8 calibration.

Decoding and resampling are Pillow's; this module only picks files, converts colour modes and applies an
:class:`~resnest_deploy.models.InputConfig` (crop, resize, normalise) the way the reference pipelines do:
``resize_then_crop`` as torchvision/timm, ``crop_then_resize`` as the official ResNeSt verify script.

What a file can hold is the user's, so every way a file can fail to decode is one :class:`ImageReadError` with a
reason, which readers skip and count: not a regular file (a folder, a FIFO, a symlink loop), unreadable, empty,
not an image, cut short, or a decompression bomb (over Pillow's pixel limit, its warning included). Animated
images give their first frame. EXIF orientation is not applied, as in torchvision's and timm's ImageFolder
pipelines that models are trained with; calibration, parity and serving all read pixels as stored.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from resnest_deploy.errors import ConfigError
from resnest_deploy.paths import real_path
from resnest_deploy.models import InputConfig

from .pixels import ImageReadError, decode, transform

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
# Dataset roots split into subsets rather than classes: never read as class names.
SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test", "testing", "calib", "eval"})




@dataclass(frozen=True)
class ImageSet:
    """Image files found under a folder.

    Attributes:
        root: The folder searched.
        files: Image files, sorted by path.
        labels: Class-folder name of each file when the folder is a class-per-subfolder tree, else None.
        classes: Sorted class-folder names (empty when not a class tree).
    """

    root: Path
    files: tuple[Path, ...]
    labels: tuple[str | None, ...]
    classes: tuple[str, ...] = ()

    @property
    def is_class_tree(self) -> bool:
        return bool(self.classes)

    def subset(self, indices: Sequence[int]) -> ImageSet:
        return ImageSet(self.root, tuple(self.files[i] for i in indices), tuple(self.labels[i] for i in indices),
                        self.classes)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def find_images(root: str | os.PathLike[str]) -> ImageSet:
    """Find images (jpg/png/webp/bmp/tiff/gif) under ``root`` recursively, leaving out hidden files and folders
    (``.ipynb_checkpoints``, ``.thumbnails``).

    A folder whose images all sit in first-level subfolders is a class tree: each image's label is its
    first-level folder's name (torchvision's ImageFolder convention). Entries named like images that are not
    regular files (a folder ``x.jpg``, a symlink loop, a FIFO) are listed too: readers skip and count them.

    Raises:
        ConfigError: ``root`` is not a folder, or holds no image files.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and not _hidden(p.relative_to(root)))
    if not files:
        raise ConfigError(f"{root}: no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    relative = [f.relative_to(root) for f in files]
    tree = all(len(r.parts) >= 2 for r in relative)
    labels = tuple(r.parts[0] if tree else None for r in relative)
    classes = tuple(sorted({label for label in labels if label})) if tree else ()
    return ImageSet(root, tuple(files), labels, classes)


def read_list_file(path: str | os.PathLike[str]) -> ImageSet:
    """Images named one per line in a text file (relative paths are taken from the file's folder).

    Raises:
        ConfigError: The file is missing or names no existing image.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such list file")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise ConfigError(f"{path}: is an image; give the folder of images, or a text file listing them")
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a text file listing images ({type(exc).__name__})") from None
    files = tuple(sorted({real_path(path.parent / n) for n in names if not n.startswith("#")}))
    if not files:
        raise ConfigError(f"{path}: lists no images")
    return ImageSet(path.parent, files, tuple(None for _ in files))


def open_rgb(path: Path) -> Image.Image:
    """Decode an image file fully to 8-bit RGB (:func:`~resnest_deploy.calibration.pixels.decode`), refusing
    what is not a regular, non-empty file before it is opened (a FIFO must never block).

    Raises:
        ImageReadError: The file cannot be used, with the reason (see the module docstring).
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ImageReadError(exc.strerror or type(exc).__name__) from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageReadError("not a regular file")
    if info.st_size == 0:
        raise ImageReadError("empty file")
    return decode(path)


def settings_dict(cfg: InputConfig) -> dict[str, object]:
    """An :class:`InputConfig` as the plain settings :mod:`~resnest_deploy.calibration.pixels` takes (and the
    served preprocessing model's config records)."""
    return {"size": cfg.size, "crop_pct": cfg.crop_pct, "interpolation": cfg.interpolation,
            "resize_mode": cfg.resize_mode, "mean": list(cfg.mean), "std": list(cfg.std)}


def preprocess(img: Image.Image, cfg: InputConfig) -> np.ndarray:
    """Apply an architecture's eval transform to an RGB image; returns float32 CHW, normalised."""
    return transform(img, settings_dict(cfg))


@dataclass
class LoadedBatch:
    """Preprocessed images of one batch, and the files that could not be read."""

    array: np.ndarray
    files: list[Path]
    labels: list[str | None]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def iter_batches(images: ImageSet, cfg: InputConfig, batch_size: int) -> Iterator[LoadedBatch]:
    """Decode and preprocess ``images`` in batches; unreadable files are skipped and reported per batch."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    for start in range(0, len(images.files), batch_size):
        arrays, files, labels, skipped = [], [], [], []
        for path, label in zip(images.files[start:start + batch_size], images.labels[start:start + batch_size]):
            try:
                arrays.append(preprocess(open_rgb(path), cfg))
            except ImageReadError as exc:
                skipped.append((path, str(exc)))
                continue
            files.append(path)
            labels.append(label)
        shape = (0, *cfg.shape)
        array = np.stack(arrays) if arrays else np.zeros(shape, dtype=np.float32)
        yield LoadedBatch(array, files, labels, skipped)
