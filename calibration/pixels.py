"""Decoding and eval preprocessing of one image: the code calibration, parity and the served Triton model all run.

This module needs only the standard library, numpy and Pillow, and imports nothing of the package, so that the
Triton repository ships this very file beside its python-backend preprocessing model (``<arch>_preprocess``) and a
stock Triton container with numpy and Pillow runs it; the model checks the copy's SHA-256 against the one the
repository recorded, and the tests check that recorded hash against this file.

Settings are plain values (an :class:`~resnest_deploy.models.InputConfig` as a dict, see :func:`settings_dict`):
``size``, ``crop_pct``, ``interpolation`` (bilinear|bicubic), ``resize_mode`` (resize_then_crop as
torchvision/timm, crop_then_resize as the official ResNeSt verify script), ``mean`` and ``std`` (per channel,
after scaling pixels to [0, 1]).
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image

RESIZE_MODES = ("resize_then_crop", "crop_then_resize")
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I", "F")


class ImageReadError(Exception):
    """Bytes or a file that cannot be used as an image; ``str()`` is the reason (one line)."""


def decode(source: bytes | str | os.PathLike[str]) -> Image.Image:
    """Decode an encoded image (bytes or a file) fully into 8-bit RGB: grayscale, palette, RGBA, CMYK and 16-bit
    are converted, an animation gives its first frame. EXIF orientation is not applied (as in the torchvision and
    timm pipelines models are trained with).

    Raises:
        ImageReadError: Not an image, cut short, or over Pillow's pixel limit (a decompression bomb), with the
            reason.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageReadError("empty file")
        source = io.BytesIO(bytes(source))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # palette transparency, odd EXIF: the pixels still decode
            return _to_rgb(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"decompression bomb refused ({_reason(exc)})") from None
    except MemoryError:
        raise ImageReadError("too large to decode in memory") from None
    except Image.UnidentifiedImageError:  # its message names a file object, not what is wrong
        raise ImageReadError("not an image (no decoder recognises its bytes)") from None
    except Exception as exc:  # any decoder failure on a user's bytes: one reason, never a crash
        raise ImageReadError(_reason(exc)) from None


def _to_rgb(source) -> Image.Image:
    with Image.open(source) as img:
        img.load()
        if img.mode in _SIXTEEN_BIT:
            array = np.asarray(img, dtype=np.float64)
            peak = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
            img = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
        return img.convert("RGB")


def transform(img: Image.Image, settings: dict) -> np.ndarray:
    """Apply eval settings (crop, resize, normalise) to an RGB image; returns float32 CHW ``[3, size, size]``."""
    size = int(settings["size"])
    crop_pct = float(settings["crop_pct"])
    resample = _RESAMPLE[settings["interpolation"]]
    width, height = img.size
    if settings["resize_mode"] == "crop_then_resize":
        side = crop_pct * min(width, height)
        left = int(round((width - side) / 2.0))
        top = int(round((height - side) / 2.0))
        img = img.crop((left, top, left + int(round(side)), top + int(round(side)))).resize((size, size), resample)
    else:
        short = int(size / crop_pct)
        if width <= height:
            new_w, new_h = short, int(short * height / width)
        else:
            new_w, new_h = int(short * width / height), short
        img = img.resize((new_w, new_h), resample)
        left = int(round((new_w - size) / 2.0))
        top = int(round((new_h - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
    array = np.asarray(img, dtype=np.float32) / 255.0
    array = (array - np.asarray(settings["mean"], dtype=np.float32)) / np.asarray(settings["std"], dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def settings_to_strings(settings: dict) -> dict[str, str]:
    """Settings as the string parameters of a Triton config (floats written so they read back exactly)."""
    return {"size": str(int(settings["size"])), "crop_pct": repr(float(settings["crop_pct"])),
            "interpolation": str(settings["interpolation"]), "resize_mode": str(settings["resize_mode"]),
            "mean": ",".join(repr(float(x)) for x in settings["mean"]),
            "std": ",".join(repr(float(x)) for x in settings["std"])}


def settings_from_strings(params: dict[str, str]) -> dict:
    """The inverse of :func:`settings_to_strings` (extra keys are ignored)."""
    return {"size": int(params["size"]), "crop_pct": float(params["crop_pct"]),
            "interpolation": params["interpolation"], "resize_mode": params["resize_mode"],
            "mean": [float(x) for x in params["mean"].split(",")], "std": [float(x) for x in params["std"].split(",")]}


def preprocess_bytes(data: bytes, settings: dict) -> np.ndarray:
    """One encoded image to the model's input tensor (what the served ``<arch>_preprocess`` returns).

    Raises:
        ImageReadError: The bytes are not a usable image.
    """
    return transform(decode(data), settings)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
