"""Image folders and the architectures' eval preprocessing, shared by parity and INT8 calibration.

Decoding and resampling are Pillow's; this module only picks files, converts colour modes and applies an
:class:`~resnest_deploy.models.InputConfig` (crop, resize, normalise) the way the reference pipelines do:
``resize_then_crop`` as torchvision/timm, ``crop_then_resize`` as the official ResNeSt verify script.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from resnest_deploy.errors import ConfigError
from resnest_deploy.models import InputConfig

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


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


def find_images(root: str | os.PathLike[str]) -> ImageSet:
    """Find images (jpg/png/webp/bmp/tiff) under ``root`` recursively.

    A folder whose images all sit in first-level subfolders is a class tree: each image's label is its
    first-level folder's name (torchvision's ImageFolder convention).

    Raises:
        ConfigError: ``root`` is not a folder, or holds no image files.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
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
    files = tuple(sorted({(path.parent / n).resolve() for n in names if not n.startswith("#")}))
    if not files:
        raise ConfigError(f"{path}: lists no images")
    return ImageSet(path.parent, files, tuple(None for _ in files))


def open_rgb(path: Path) -> Image.Image:
    """Decode an image fully and convert it to 8-bit RGB (grayscale, palette, RGBA, CMYK, 16-bit)."""
    with Image.open(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            array = np.asarray(img, dtype=np.float64)
            peak = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
            img = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
        return img.convert("RGB")


def preprocess(img: Image.Image, cfg: InputConfig) -> np.ndarray:
    """Apply an architecture's eval transform to an RGB image; returns float32 CHW, normalised."""
    size = cfg.size
    resample = _RESAMPLE[cfg.interpolation]
    width, height = img.size
    if cfg.resize_mode == "crop_then_resize":
        side = cfg.crop_pct * min(width, height)
        left = int(round((width - side) / 2.0))
        top = int(round((height - side) / 2.0))
        img = img.crop((left, top, left + int(round(side)), top + int(round(side)))).resize((size, size), resample)
    else:
        short = int(size / cfg.crop_pct)
        if width <= height:
            new_w, new_h = short, int(short * height / width)
        else:
            new_w, new_h = int(short * width / height), short
        img = img.resize((new_w, new_h), resample)
        left = int(round((new_w - size) / 2.0))
        top = int(round((new_h - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
    array = np.asarray(img, dtype=np.float32) / 255.0
    array = (array - np.asarray(cfg.mean, dtype=np.float32)) / np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


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
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
                skipped.append((path, _reason(exc)))
                continue
            files.append(path)
            labels.append(label)
        shape = (0, *cfg.shape)
        array = np.stack(arrays) if arrays else np.zeros(shape, dtype=np.float32)
        yield LoadedBatch(array, files, labels, skipped)


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
