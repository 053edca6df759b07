"""Calibration data: pick images deterministically, preprocess them as the arch's eval transform, cache the tensor.

Sources are a folder (class tree or flat, searched recursively), a text file listing images, or ``synthetic``
(seeded image-like tensors; only for pipeline checks on random-init models, never for a deployed model).
The preprocessed tensor is cached as ``.npy`` under a key made of the chosen files (path, size, mtime) and the
preprocessing, so a second quantization of the same model family on the same data skips decoding.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from resnest_deploy.atomic import atomic_path
from resnest_deploy.errors import ConfigError
from resnest_deploy.hashing import record_sha256
from resnest_deploy.paths import real_path, user_path
from resnest_deploy.models import InputConfig
from resnest_deploy.progress import ProgressFn

from .images import ImageReadError, ImageSet, find_images, iter_batches, open_rgb, read_list_file

SYNTHETIC = "synthetic"
DEFAULT_CALIB_SIZE = 512


@dataclass
class CalibrationData:
    """A preprocessed calibration tensor and where it came from.

    Attributes:
        array: float32 [N, 3, H, W], normalised as the arch's eval transform.
        source: The folder, list file or ``synthetic``.
        files: Files used, in order (empty for synthetic data).
        file_list_sha256: Hash of the chosen file list (names, sizes, mtimes) and the preprocessing.
        skipped: Files that could not be decoded, with the reason.
        warnings: Things the user should know (fewer images than asked, synthetic data).
        cache_hit: Whether the tensor came from the cache.
    """

    array: np.ndarray
    source: str
    files: list[str]
    file_list_sha256: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cache_hit: bool = False

    def record(self) -> dict[str, object]:
        """What goes into the artifact's metadata."""
        return {"source": self.source, "samples": int(self.array.shape[0]), "file_list_sha256": self.file_list_sha256,
                "skipped": len(self.skipped)}


def default_cache_dir() -> Path:
    """``$RESNEST_DEPLOY_CACHE``, else ``$XDG_CACHE_HOME/resnest-deploy``, else ``~/.cache/resnest-deploy``."""
    if os.environ.get("RESNEST_DEPLOY_CACHE"):
        return Path(os.environ["RESNEST_DEPLOY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "resnest-deploy"


def check_source(source: str | os.PathLike[str]) -> None:
    """Check that a calibration source exists (a folder, a list file or ``synthetic``) before any work starts.

    Raises:
        ConfigError: Missing, or neither a folder nor a file.
    """
    if str(source) == SYNTHETIC:
        return
    path = user_path(source)
    if not path.exists():
        raise ConfigError(f"{path}: no such calibration folder or list file")
    if not (path.is_dir() or path.is_file()):
        raise ConfigError(f"{path}: not a folder or a list file")


@dataclass(frozen=True)
class CalibrationSelection:
    """The calibration images of one run, chosen once (a source is opened and sampled here and nowhere else).

    Attributes:
        source: The folder, list file or ``synthetic``, as given.
        images: The chosen files (None for synthetic data).
        count: Images asked for.
        seed: Seed of the sampling (and of synthetic data).
        warnings: What the user should know about the choice (fewer images than asked).
    """

    source: str
    images: ImageSet | None
    count: int
    seed: int
    warnings: tuple[str, ...] = ()

    def key(self, cfg: InputConfig) -> str:
        """What the calibration tensor depends on: the chosen files (path, size, mtime) and the preprocessing."""
        if self.images is None:
            return record_sha256({"source": SYNTHETIC, "count": self.count, "seed": self.seed, "size": cfg.size})
        return file_list_key(self.images.files, cfg)

    def check_usable(self) -> None:
        """Decode chosen files in order until one works (a folder of good images costs one decode).

        Raises:
            ConfigError: None of the chosen files decodes.
        """
        if self.images is None:
            return
        reasons = []
        for path in self.images.files:
            try:
                open_rgb(path)
                return
            except ImageReadError as exc:
                reasons.append((path, str(exc)))
        example = f", e.g. {reasons[0][0].name}: {reasons[0][1]}" if reasons else ""
        raise ConfigError(f"{self.source}: no readable images among {len(self.images.files)} files{example}")


def select_calibration(source: str | os.PathLike[str], count: int, seed: int) -> CalibrationSelection:
    """Open a calibration source and choose ``count`` images with ``seed`` (see :func:`sample_images`).

    Raises:
        ConfigError: Missing or empty source, or a count below 1.
    """
    if isinstance(source, CalibrationSelection):
        return source
    check_source(source)
    if count < 1:
        raise ConfigError(f"--calib-size must be >= 1, got {count}")
    if str(source) == SYNTHETIC:
        return CalibrationSelection(SYNTHETIC, None, count, seed)
    images, warnings = sample_images(open_source(source), count, seed)
    return CalibrationSelection(str(source), images, count, seed, tuple(warnings))


def check_usable(source: str | os.PathLike[str], count: int, seed: int) -> CalibrationSelection:
    """Choose the images ``count`` and ``seed`` pick and check, before any slow work, that one of them decodes.

    Raises:
        ConfigError: Missing or empty source, or none of the chosen files decodes.
    """
    selection = select_calibration(source, count, seed)
    selection.check_usable()
    return selection


def open_source(source: str | os.PathLike[str]) -> ImageSet:
    """The images of a folder or a list file.

    Raises:
        ConfigError: Missing source, or one with no image files.
    """
    path = user_path(source)
    if path.is_dir():
        return find_images(path)
    if path.is_file():
        return read_list_file(path)
    raise ConfigError(f"{path}: no such calibration folder or list file")


def sample_images(images: ImageSet, count: int, seed: int) -> tuple[ImageSet, list[str]]:
    """``count`` images chosen with ``seed`` (all of them, with a warning, when fewer exist), in path order."""
    if count < 1:
        raise ConfigError(f"--calib-size must be >= 1, got {count}")
    total = len(images.files)
    if count >= total:
        warnings = [f"--calib-size {count} is more than the {total} images in {images.root}; using all {total}"] \
            if count > total else []
        return images, warnings
    chosen = np.random.default_rng(seed).choice(total, size=count, replace=False)
    return images.subset(sorted(int(i) for i in chosen)), []


def file_list_key(files: tuple[Path, ...], cfg: InputConfig) -> str:
    """SHA-256 of the file list (resolved path, byte size, mtime) and the preprocessing settings."""
    digest = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode())
    for path in files:
        try:
            stat = path.stat()
            digest.update(f"{real_path(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()


def load_calibration(
    source: str | os.PathLike[str] | CalibrationSelection, cfg: InputConfig, *, count: int = DEFAULT_CALIB_SIZE,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True, progress: ProgressFn | None = None,
) -> CalibrationData:
    """Choose, decode and preprocess calibration images (or read them from the cache).

    Args:
        source: Folder (class tree or flat), list file, or ``"synthetic"``; or images already chosen by
            :func:`select_calibration` (``count`` and ``seed`` are then the selection's).
        cfg: The artifact's input settings (size, crop, interpolation, mean/std).
        count: Images to use; all of them (with a warning) when the source has fewer.
        seed: Seed of the sampling (and of synthetic data).
        cache_dir: Where preprocessed tensors are cached (default :func:`default_cache_dir`).
        use_cache: Read and write the cache.
        progress: Called with (``calibration data``, images done, images total) while decoding.

    Raises:
        ConfigError: Missing or empty source, or no readable image among those chosen.
    """
    selection = select_calibration(source, count, seed)
    if selection.images is None:
        return _synthetic(cfg, selection)
    images, warnings, source = selection.images, list(selection.warnings), selection.source
    key = selection.key(cfg)
    cache_file = Path(cache_dir or default_cache_dir()) / "calibration" / f"{key[:32]}.npz"
    if use_cache and cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as stored:
                array, used = stored["array"], [str(f) for f in stored["files"]]
                skipped = [tuple(s) for s in stored["skipped"].tolist()]
            return CalibrationData(array, str(source), used, key, skipped, warnings, cache_hit=True)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    arrays, used, skipped = [], [], []
    for batch in iter_batches(images, cfg, 32):
        arrays.append(batch.array)
        used += [str(f) for f in batch.files]
        skipped += [(str(f), reason) for f, reason in batch.skipped]
        if progress:
            progress("calibration data", len(used) + len(skipped), len(images.files))
    if not used:
        example = f", e.g. {Path(skipped[0][0]).name}: {skipped[0][1]}" if skipped else ""
        raise ConfigError(f"{source}: no readable images among {len(images.files)} files{example}")
    if skipped:
        warnings.append(f"skipped {len(skipped)} unreadable image(s), e.g. {Path(skipped[0][0]).name}")
    array = np.concatenate(arrays)
    if use_cache:
        _store(cache_file, array, used, skipped)
    return CalibrationData(array, str(source), used, key, skipped, warnings)


def _store(path: Path, array: np.ndarray, files: list[str], skipped: list[tuple[str, str]]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, array=array, files=np.asarray(files, dtype=str),
                     skipped=np.asarray(skipped, dtype=str).reshape(-1, 2))
    except OSError:
        pass  # the cache is an optimisation; an unwritable cache folder must not fail the quantization


def _synthetic(cfg: InputConfig, selection: CalibrationSelection) -> CalibrationData:
    import torch

    from resnest_deploy.models.synthetic import synthetic_images

    generator = torch.Generator().manual_seed(selection.seed)
    array = synthetic_images(selection.count, cfg.size, generator).numpy()
    key = selection.key(cfg)
    warning = ("calibrating on synthetic images: fine for checking the pipeline on a random-init model, "
               "not representative of real data")
    return CalibrationData(array, SYNTHETIC, [], key, warnings=[warning])
