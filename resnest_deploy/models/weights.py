"""Checkpoints: safe reading, key-layout detection (official ResNeSt, timm, torchvision), strict loading, download.

Only ``torch.load(weights_only=True)`` and safetensors are used, so a pickle carrying code is refused before any
of it runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import re
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_path
from ..hashing import file_sha256
from ..paths import check_output, existing_file, user_path
from ..progress import ProgressFn
from ..errors import CheckpointError, DownloadError, WeightsMismatchError
from .config import ModelConfig

StateDict = dict[str, torch.Tensor]

# Where training scripts put the weights: the PyTorch ImageNet example and Lightning use ``state_dict``, timm's
# train script ``state_dict`` (plus ``state_dict_ema``), others ``model``/``model_state_dict``/``module``/``net``.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")
_STRIP_PREFIXES = ("module.", "model.", "_orig_mod.")
# Top-level module names of our backbone (and of the official, timm and torchvision ResNets).
_TOP_LEVEL = frozenset({"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"})
# Plain-data classes training scripts store beside the weights (timm's train script saves its argparse
# arguments). Allowed for ``torch.load(weights_only=True)``: building them runs no code of the file.
_SAFE_CLASSES = (argparse.Namespace,)
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
_PICKLE_PROTO = b"\x80"  # legacy torch.save and raw pickles start with the PROTO opcode


@dataclass(frozen=True)
class Layout:
    """A key layout: a name and the regex renames that turn its keys into ours."""

    name: str
    renames: tuple[tuple[str, str], ...] = ()

    def convert(self, state: StateDict) -> StateDict:
        """Return ``state`` with every key renamed to our layout."""
        out: StateDict = {}
        for key, value in state.items():
            for pattern, repl in self.renames:
                key = re.sub(pattern, repl, key)
            out[key] = value
        return out


# Official ResNeSt, torchvision and timm's ResNet/ResNeSt share our keys; timm's SK blocks wrap convs in
# ConvNormAct (``conv1.conv``/``conv1.bn``), which we unwrap.
LAYOUTS: tuple[Layout, ...] = (
    Layout("official/torchvision/timm"),
    Layout(
        "timm",
        (
            (r"^(layer\d\.\d+)\.conv(\d)\.conv\.", r"\1.conv\2."),
            (r"^(layer\d\.\d+)\.conv(\d)\.bn\.", r"\1.bn\2."),
        ),
    ),
)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read from disk.

    Attributes:
        path: The file it came from.
        sha256: Hex SHA-256 of the file.
        state: Its tensors, keys still in the file's own layout.
    """

    path: Path
    sha256: str
    state: StateDict

    @property
    def num_classes(self) -> int | None:
        """Classifier size, read from ``fc.weight`` in any supported layout."""
        for key, value in self.state.items():
            if key.endswith("fc.weight") and value.ndim == 2:
                return int(value.shape[0])
        return None


def _holds_weights(obj: object) -> bool:
    """A mapping with tensors among its values, or mappings that may hold them (one level down)."""
    return isinstance(obj, Mapping) and any(isinstance(v, (torch.Tensor, Mapping)) for v in obj.values())


def _unwrap(obj: object, path: Path) -> StateDict:
    """Find the state dict inside a loaded object and keep its tensors.

    Training checkpoints hold the weights under a wrapper key next to other entries (epoch, optimizer state, a
    best accuracy stored as a tensor, arguments); the wrapper key wins over loose tensors beside it.
    """
    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if _holds_weights(obj.get(k))), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: no state dict found (expected tensors, or a dict under 'state_dict'/'model')")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{path}: no tensors found in the checkpoint")
    return _strip_wrappers(state)


def _strip_wrappers(state: StateDict) -> StateDict:
    """Remove the attribute names a model was wrapped in (``module.`` from DataParallel, ``model.``/``net.`` from
    a Lightning module, ``_orig_mod.`` from torch.compile), keeping only the wrapped network's tensors."""
    for _ in range(4):
        heads = {k.split(".", 1)[0] for k in state}
        if heads & _TOP_LEVEL or not all("." in k for k in state):
            return state
        for prefix in _STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                break
        else:
            # Several sub-modules (e.g. ``model.*`` and ``criterion.*``): keep the one that looks like a backbone.
            groups = {h: {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(h + ".")} for h in heads}
            backbone = [g for g in groups.values() if {k.split(".", 1)[0] for k in g} & _TOP_LEVEL]
            if len(backbone) != 1:
                return state
            state = backbone[0]
    return state


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a .pth/.pt/.safetensors checkpoint safely.

    Args:
        path: File holding a state dict, or a dict with the state dict under ``state_dict`` or ``model``.

    Returns:
        The checkpoint with its file hash.

    Raises:
        CheckpointError: Missing, truncated, not a checkpoint, or a pickle that would run code.
    """
    path = existing_file(path, CheckpointError, "checkpoint file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise CheckpointError(f"{path}: file is empty")
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        obj = _read_safetensors(path)
    elif head.startswith(_ZIP_MAGIC) or head[:1] == _PICKLE_PROTO:
        obj = _read_torch(path)
    else:
        raise CheckpointError(f"{path}: not a PyTorch or safetensors checkpoint (unrecognised file header)")
    state = _unwrap(obj, path)
    _check_finite(state, path)
    return Checkpoint(path=path, sha256=file_sha256(path), state=state)


def _check_finite(state: StateDict, path: Path) -> None:
    """Refuse a checkpoint whose floating-point tensors hold NaN or infinity, naming the first such tensor: the
    export would otherwise run and fail its verification with nothing said about why.

    Raises:
        CheckpointError: The first non-finite tensor, with how many of its values are bad.
    """
    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.numel():
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                bad = int((~finite).sum())
                raise CheckpointError(f"{path}: tensor {name} holds {bad} non-finite value(s) (NaN or infinity) of "
                                      f"{tensor.numel()}; the checkpoint is damaged")


def _read_safetensors(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None


def _read_torch(path: Path) -> object:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols; the error below says enough
            with torch.serialization.safe_globals(list(_SAFE_CLASSES)):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" in text:
            raise CheckpointError(
                f"{path}: refused: the pickle holds more than tensors ({_unpickler_reason(text)}); "
                "only plain tensors are loaded, nothing in the file was run"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_first_line(exc)})") from None
    except Exception as exc:  # the unpickler raises many types on cut or corrupt files
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({_first_line(exc)})") from None


def _unpickler_reason(text: str) -> str:
    """The specific cause inside torch's long weights-only error, e.g. ``unsupported GLOBAL posix.system``."""
    match = re.search(r"GLOBAL ([\w.]+)", text)
    if match:
        return f"it references {match.group(1)}"
    match = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    return match.group(1).strip()[:160] if match else "objects other than tensors"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


@dataclass(frozen=True)
class KeyReport:
    """How a converted checkpoint's keys compare with a model's."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    wrong_shape: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    @property
    def mismatches(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.wrong_shape)

    def describe(self, limit: int = 4) -> str:
        """A one-line summary naming the first few mismatched keys of each kind."""

        def head(items: list[str]) -> str:
            more = f", … +{len(items) - limit}" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({head(list(self.missing))})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({head(list(self.unexpected))})")
        if self.wrong_shape:
            shapes = [f"{k} {tuple(a)} vs model {tuple(b)}" for k, a, b in self.wrong_shape]
            parts.append(f"{len(self.wrong_shape)} wrong shape ({head(shapes)})")
        return "; ".join(parts)


def compare_keys(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size]) -> KeyReport:
    """Compare a state dict with the expected key -> shape map; ``num_batches_tracked`` may be absent."""
    missing = tuple(k for k in expected if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = tuple(k for k in state if k not in expected)
    wrong = tuple(
        (k, tuple(state[k].shape), tuple(shape))
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != tuple(shape)
    )
    return KeyReport(missing, unexpected, wrong)


def match_layout(state: StateDict, expected: Mapping[str, torch.Size]) -> tuple[Layout, StateDict, KeyReport]:
    """Pick the layout whose conversion fits ``expected`` best (an exact fit if there is one)."""
    candidates = []
    for layout in LAYOUTS:
        converted = layout.convert(state)
        report = compare_keys(converted, expected)
        if report.ok:
            return layout, converted, report
        candidates.append((layout, converted, report))
    return min(candidates, key=lambda c: c[2].mismatches)


def expected_shapes(model: nn.Module) -> dict[str, torch.Size]:
    """Key -> shape of a model's state dict."""
    return {k: v.shape for k, v in model.state_dict().items()}


def load_into(model: nn.Module, checkpoint: Checkpoint, cfg: ModelConfig, *, guess: Callable[[StateDict], str | None]
              | None = None) -> str:
    """Load ``checkpoint`` into ``model`` strictly, detecting its key layout.

    Args:
        model: Network built from ``cfg``.
        checkpoint: Checkpoint read by :func:`read_checkpoint`.
        cfg: The architecture's config, named in errors.
        guess: Optional function naming the registered arch a mismatching checkpoint fits, for the error.

    Returns:
        The name of the detected layout.

    Raises:
        WeightsMismatchError: Missing, unexpected or wrong-shape keys, named in the message.
    """
    layout, converted, report = match_layout(checkpoint.state, expected_shapes(model))
    if not report.ok:
        hint = guess(checkpoint.state) if guess else None
        fits = f"; it fits {hint}" if hint else ""
        raise WeightsMismatchError(
            f"{checkpoint.path.name} does not fit {cfg.name}{fits}: {report.describe()}"
        )
    model.load_state_dict(converted, strict=False)
    return layout.name




def download_weights(
    url: str, sha256_prefix: str, dest_dir: str | os.PathLike[str], *, progress: ProgressFn | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download a checkpoint to ``dest_dir`` and check its SHA-256 prefix; reuse a good existing copy.

    The file is written to a temporary name in ``dest_dir`` and renamed only after its hash matched, so an
    interrupted or corrupt download never leaves a file under the final name.

    Args:
        url: ``https://``, ``http://`` or ``file://`` address; its last path part is the file name.
        sha256_prefix: Leading hex digits the file's SHA-256 must start with.
        dest_dir: Folder to store the file in (created if needed).
        progress: Called with (``download``, bytes so far, total bytes or None) as data arrives.
        timeout: Socket timeout in seconds.

    Returns:
        Path of the verified file.

    Raises:
        DownloadError: The transfer failed or the hash did not match.
        OutputError: ``dest_dir`` cannot be written.
    """
    dest = user_path(dest_dir)
    name = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path)).name
    if not name:
        raise DownloadError(f"{url}: names no file to download")
    target = check_output(dest / name)
    if target.is_file() and file_sha256(target).startswith(sha256_prefix):
        return target
    with atomic_path(target) as tmp:
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                total = response.headers.get("Content-Length")
                total_bytes = int(total) if total and total.isdigit() else None
                done = 0
                while block := response.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress:
                        progress("download", done, total_bytes)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DownloadError(f"download of {url} failed: {getattr(exc, 'reason', None) or exc}") from None
        actual = digest.hexdigest()
        if not actual.startswith(sha256_prefix):
            raise DownloadError(f"{url}: SHA-256 {actual[:16]}… does not start with {sha256_prefix}; file discarded")
    return target


def download_published(arch: str, dest_dir: str | os.PathLike[str], *, url: str | None = None,
                       progress: ProgressFn | None = None) -> Path:
    """Download the published checkpoint of a registered architecture (see :func:`download_weights`).

    Raises:
        UnknownArchError: ``arch`` is not registered.
        ConfigError: The architecture has no published checkpoint.
        DownloadError, OutputError: From :func:`download_weights`.
    """
    from ..errors import ConfigError
    from .registry import get_config

    cfg = get_config(arch)
    if cfg.weights is None:
        raise ConfigError(f"{cfg.name} has no published checkpoint to download; pass your own with --weights")
    return download_weights(url or cfg.weights.url, cfg.weights.sha256_prefix, dest_dir, progress=progress)
