"""Pools of hostile inputs, generated: image files in every form a user's folder can hold them, and values for
every kind of option. Tests draw from these pools instead of naming one case each."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# Image files every reader must take (decoded to RGB the same way in calibration, parity and serving).
READABLE = ("rgb.png", "gray.jpg", "rgba.webp", "palette.bmp", "palette_alpha.png", "cmyk.tiff", "cmyk.jpg",
            "sixteen.png", "animated.gif", "animated.webp", "exif_rotated.jpg", "tiny_1x1.png", "wide.png")
# Files a folder of images can hold that no reader can use: each must be skipped and counted, never a crash.
UNREADABLE = ("truncated.jpg", "truncated.png", "empty.png", "text.png", "bomb.png", "bomb_warning.png",
              "html.jpg", "zeros.webp", "garbage.tiff")
# Entries named like images that are not regular files: never opened (a FIFO would block a reader forever).
NOT_FILES = ("folder.jpg", "loop.jpg", "fifo.png", "dangling.png")


def _png_header(width: int, height: int, payload: bytes = b"\x00" * 16) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb when large) with a tiny body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(payload)) + chunk(b"IEND", b"")


def _base(h: int = 48, w: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
    return Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)


def write_readable(folder: Path, names: tuple[str, ...] = READABLE) -> list[Path]:
    """Write every readable kind (or the ``names`` among them) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = _base()
    makers = {
        "rgb.png": lambda p: rgb.save(p),
        "gray.jpg": lambda p: rgb.convert("L").save(p),
        "rgba.webp": lambda p: rgb.convert("RGBA").save(p),
        "palette.bmp": lambda p: rgb.convert("P").save(p),
        "palette_alpha.png": lambda p: rgb.convert("P").save(p, transparency=0),
        "cmyk.tiff": lambda p: rgb.convert("CMYK").save(p),
        "cmyk.jpg": lambda p: rgb.convert("CMYK").save(p),
        "sixteen.png": lambda p: Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).save(p),
        "animated.gif": lambda p: rgb.save(p, save_all=True, append_images=[_base(seed=1)], duration=50),
        "animated.webp": lambda p: rgb.save(p, save_all=True, append_images=[_base(seed=1)], duration=50),
        "exif_rotated.jpg": lambda p: _exif_rotated(rgb, p),
        "tiny_1x1.png": lambda p: Image.new("RGB", (1, 1), (200, 10, 10)).save(p),
        "wide.png": lambda p: _base(8, 400).save(p),
    }
    paths = []
    for name in names:
        makers[name](folder / name)
        paths.append(folder / name)
    return paths


def _exif_rotated(img: Image.Image, path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    img.save(path, exif=exif)


def write_unreadable(folder: Path, names: tuple[str, ...] = UNREADABLE) -> list[Path]:
    """Write every unreadable kind (or the ``names`` among them) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    good_png, good_jpg = io.BytesIO(), io.BytesIO()
    _base().save(good_png, format="PNG")
    _base().save(good_jpg, format="JPEG")
    makers = {
        "truncated.jpg": good_jpg.getvalue()[: len(good_jpg.getvalue()) // 3],
        "truncated.png": good_png.getvalue()[: len(good_png.getvalue()) // 2],
        "empty.png": b"",
        "text.png": b"this is not an image\n",
        "bomb.png": _png_header(20000, 20000),  # over twice Pillow's pixel limit: DecompressionBombError
        "bomb_warning.png": _png_header(10000, 10000),  # over the limit: DecompressionBombWarning, then cut short
        "html.jpg": b"<!doctype html><html><body>404</body></html>",
        "zeros.webp": b"\x00" * 4096,
        "garbage.tiff": b"II*\x00" + os.urandom(512),
    }
    paths = []
    for name in names:
        (folder / name).write_bytes(makers[name])
        paths.append(folder / name)
    return paths


def write_not_files(folder: Path, names: tuple[str, ...] = NOT_FILES) -> list[Path]:
    """Make entries named like images that are not regular files (a folder, a symlink loop, a FIFO, a dangling
    link)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / name
        if name == "folder.jpg":
            path.mkdir()
        elif name == "loop.jpg":
            path.symlink_to(path.name)
        elif name == "fifo.png":
            os.mkfifo(path)
        elif name == "dangling.png":
            path.symlink_to("does-not-exist.png")
        paths.append(path)
    return paths
