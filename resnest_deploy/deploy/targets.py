"""Target GPUs of a deployment, read from ``targets.toml`` (standard library ``tomllib``).

One table per target::

    [targets.l4]
    compute_capability = "8.9"     # the GPU's SM version: 7.0 ... 12.1 (8.7 = Jetson Orin)
    tensorrt_major = 10            # 10 or 11: engines built by one major do not run on the other
    precisions = ["fp16", "int8"]  # fp32, fp16, int8 [default: the run's --precisions]
    batch = "1:8:32"               # optimization profile MIN:OPT:MAX [default: the run's --batch]
    hardware_compat = "none"       # none, ampere+ or same-cc
    workspace_gib = 4.0

Every mistake (an unknown key, an impossible value) is one line naming the file, the target and the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, check_number
from ..kinds import Precision
from resnest_deploy.exporters.tensorrt_options import MAX_WORKSPACE_GIB, HardwareCompat, parse_batch

# Compute capabilities of NVIDIA GPUs TensorRT 10/11 build for (TensorRT support matrices): Volta 7.0, Xavier 7.2,
# Turing 7.5, Ampere 8.0/8.6, Orin 8.7, Ada 8.9, Hopper 9.0, Blackwell 10.0/10.1/10.3/11.0/12.0/12.1.
KNOWN_CC = ("7.0", "7.2", "7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "10.1", "10.3", "11.0", "12.0", "12.1")
NO_INT8_TENSOR_CORES = ("7.0",)  # Volta: INT8 would not run faster than FP16; TensorRT lists no INT8 there
JETSON_CC = ("7.2", "8.7")  # Jetson Xavier/Orin: TensorRT 11 does not support Jetson (stay on 10.x)
# CUDA 13, which TensorRT 11 is built on, dropped Volta (7.0) and Xavier (7.2): TensorRT 11 builds nothing for them.
NOT_IN_TENSORRT_11 = ("7.0", "7.2")
KEYS = ("compute_capability", "tensorrt_major", "tensorrt_version", "triton_release", "version_compatible",
        "precisions", "batch", "hardware_compat", "workspace_gib")
# The TensorRT each Triton Inference Server container release ships (its release notes, "The container also
# includes the following", and NVIDIA's Frameworks Support Matrix): a plain engine loads only in the TensorRT
# version that built it. Releases before 25.03 ship TensorRT older than this tool's floor (10.9). For a release not
# listed here, give its TensorRT as tensorrt_version.
TRITON_TENSORRT = {"24.12": "10.7.0.23", "25.01": "10.8.0.43", "25.02": "10.8.0.43", "25.03": "10.9.0.34",
                   "25.04": "10.9.0.34"}
MIN_TENSORRT_VERSION = (10, 9)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Target:
    """One GPU a deployment builds engines for.

    Attributes:
        name: Folder-safe name (``targets/<name>/`` holds its bundle).
        compute_capability: ``"8.6"``; None for "whatever GPU host runs the bundle" (no --targets, no GPU here).
        tensorrt_major: 10 or 11; None when not pinned.
        precisions: Engines to build.
        batch: Optimization profile ``MIN:OPT:MAX``.
        hardware_compat: ``none``, ``ampere+`` or ``same-cc``.
        workspace_gib: Builder workspace limit.
        tensorrt_version: The exact TensorRT the target's Triton runs (``10.9.0.34``): build.sh builds with that
            version and refuses another; None: the GPU host's own TensorRT, recorded in each plan's manifest.
        version_compatible: Build version-compatible plans (they load in later TensorRT runtimes of the same
            major when the server runs with ``--backend-config=tensorrt,version-compatible=true``).
    """

    name: str
    compute_capability: str | None
    tensorrt_major: int | None
    precisions: tuple[str, ...]
    batch: str = "1:8:32"
    hardware_compat: str = "none"
    workspace_gib: float = 4.0
    source: str = field(default="", compare=False)
    tensorrt_version: str | None = None
    version_compatible: bool = False

    @property
    def sm(self) -> str:
        """``"86"`` for 8.6, the plan file suffix; ``"any"`` when the capability is not pinned."""
        return self.compute_capability.replace(".", "") if self.compute_capability else "any"

    @property
    def profile(self) -> tuple[int, int, int]:
        return parse_batch(self.batch)

    def plan_name(self) -> str:
        """The engine's file name inside a Triton version folder: ``model.sm86.plan`` (``model.plan``, Triton's
        default name, for a target whose compute capability is not pinned)."""
        return f"model.sm{self.sm}.plan" if self.compute_capability else "model.plan"

    def to_dict(self) -> dict[str, Any]:
        body = {"name": self.name, "compute_capability": self.compute_capability,
                "tensorrt_major": self.tensorrt_major, "precisions": list(self.precisions), "batch": self.batch,
                "hardware_compat": self.hardware_compat, "workspace_gib": self.workspace_gib}
        if self.tensorrt_version:
            body["tensorrt_version"] = self.tensorrt_version
        if self.version_compatible:
            body["version_compatible"] = True
        return body


def _fail(path: Path, target: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: target {target!r}, key {key!r}: {message}")


def _target(path: Path, name: str, table: Any, precisions: tuple[str, ...], batch: str) -> Target:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: target {name!r} must be a table ([targets.{name}])")
    if not _NAME.match(name):
        raise _fail(path, name, "name", "use letters, digits, '.', '_' or '-' (it names a folder)")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise _fail(path, name, unknown[0], f"unknown key; known keys are {', '.join(KEYS)}")
    if "compute_capability" not in table:
        raise _fail(path, name, "compute_capability", "missing (e.g. \"8.6\")")
    cc = str(table["compute_capability"])
    if isinstance(table["compute_capability"], float):
        cc = f"{table['compute_capability']:.1f}"
    if cc not in KNOWN_CC:
        raise _fail(path, name, "compute_capability", f"{cc} is not a compute capability TensorRT builds for "
                                                      f"({', '.join(KNOWN_CC)})")
    version, major, compatible = _tensorrt(path, name, table)
    if major == 11 and cc in NOT_IN_TENSORRT_11:
        raise _fail(path, name, "tensorrt_major", f"TensorRT 11 is built on CUDA 13, which no longer supports compute "
                                                  f"capability {cc}; use 10")
    if major == 11 and cc in JETSON_CC:
        raise _fail(path, name, "tensorrt_major", f"compute capability {cc} is a Jetson, which TensorRT 11 does not "
                                                  "support; use 10")
    chosen = table.get("precisions", list(precisions))
    if not isinstance(chosen, list) or not chosen or any(p not in Precision.values() for p in chosen):
        raise _fail(path, name, "precisions", f"{chosen!r}: a non-empty list of {', '.join(Precision.values())}")
    if "int8" in chosen and cc in NO_INT8_TENSOR_CORES:
        raise _fail(path, name, "precisions", f"INT8 on compute capability {cc}, which has no INT8 Tensor Cores")
    profile = str(table.get("batch", batch))
    try:
        parse_batch(profile)
    except ConfigError as exc:
        raise _fail(path, name, "batch", str(exc).replace("--profile ", "")) from None
    compat = str(table.get("hardware_compat", HardwareCompat.none.value))
    if compat not in [c.value for c in HardwareCompat]:
        raise _fail(path, name, "hardware_compat", f"{compat!r}: use none, ampere+ or same-cc")
    if compat == HardwareCompat.ampere_plus.value and float(cc) < 8.0:
        raise _fail(path, name, "hardware_compat", f"ampere+ engines need compute capability 8.0 or newer, not {cc}")
    workspace = table.get("workspace_gib", 4.0)
    try:
        check_number("workspace_gib", workspace, 0, MAX_WORKSPACE_GIB, low_open=True)
    except ConfigError:
        raise _fail(path, name, "workspace_gib", f"{workspace!r}: a finite number of GiB in "
                                                 f"(0, {MAX_WORKSPACE_GIB:g}]") from None
    return Target(name, cc, major, tuple(dict.fromkeys(chosen)), profile, compat, float(workspace), str(path),
                  version, compatible)


def _tensorrt(path: Path, name: str, table: dict) -> tuple[str | None, int | None, bool]:
    """The target's TensorRT: (exact version or None, major or None, version-compatible plans)."""
    major = table.get("tensorrt_major")
    if major is not None and (isinstance(major, bool) or major not in (10, 11)):
        raise _fail(path, name, "tensorrt_major", f"{major!r}: use 10 or 11")
    version = table.get("tensorrt_version")
    release = table.get("triton_release")
    if release is not None:
        if version is not None:
            raise _fail(path, name, "triton_release", "give triton_release or tensorrt_version, not both")
        if str(release) not in TRITON_TENSORRT:
            raise _fail(path, name, "triton_release", f"{release!r} is not in this tool's table of Triton releases "
                                                      f"({', '.join(TRITON_TENSORRT)}); give its TensorRT as "
                                                      "tensorrt_version (its release notes list it)")
        version = TRITON_TENSORRT[str(release)]
    if version is not None:
        parts = str(version).split(".")
        if not (isinstance(version, str) and 2 <= len(parts) <= 4 and all(p.isdigit() for p in parts)):
            raise _fail(path, name, "tensorrt_version", f"{version!r}: a version like \"10.9.0.34\"")
        numbers = tuple(int(p) for p in parts)
        if numbers[:2] < MIN_TENSORRT_VERSION:
            key = "triton_release" if release is not None else "tensorrt_version"
            raise _fail(path, name, key, f"TensorRT {version} is older than {'.'.join(map(str, MIN_TENSORRT_VERSION))}, "
                                         "the oldest this tool builds for")
        if major is not None and major != numbers[0]:
            raise _fail(path, name, "tensorrt_major", f"{major} but tensorrt_version is {version}")
        major = numbers[0]
    compatible = table.get("version_compatible", False)
    if not isinstance(compatible, bool):
        raise _fail(path, name, "version_compatible", f"{compatible!r}: true or false")
    return version, major, compatible


def load_targets(path: str | Path, *, precisions: tuple[str, ...], batch: str) -> list[Target]:
    """Read and check a targets file; ``precisions`` and ``batch`` are the defaults of every target.

    Raises:
        ConfigError: Missing or unreadable file, not TOML, no targets, or a bad target (one line naming file,
            target and key).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--targets {path}: no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    extra = sorted(set(data) - {"targets"})
    if extra:
        raise ConfigError(f"{path}: unknown table or key {extra[0]!r}; targets go under [targets.<name>]")
    tables = data.get("targets")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path}: no targets; add tables like [targets.l4] with compute_capability = \"8.9\"")
    targets = [_target(path, name, table, precisions, batch) for name, table in tables.items()]
    ccs = [t.compute_capability for t in targets]
    duplicate = next((cc for cc in ccs if ccs.count(cc) > 1), None)
    if duplicate:
        raise ConfigError(f"{path}: two targets share compute capability {duplicate}; a Triton repository keys its "
                          "plans by compute capability, so merge them into one target")
    return targets


def any_gpu_target(precisions: tuple[str, ...], batch: str) -> Target:
    """The one bundle made without --targets on a host without a GPU: for whatever GPU host runs it."""
    return Target("gpu-host", None, None, precisions, batch)


def host_target(compute_capability: str, tensorrt_version: str | None, precisions: tuple[str, ...],
                batch: str) -> Target:
    """This host's GPU as the target (without --targets on a GPU host)."""
    major = int(tensorrt_version.split(".")[0]) if tensorrt_version and tensorrt_version[0].isdigit() else None
    return Target(f"sm{compute_capability.replace('.', '')}", compute_capability, major, precisions, batch)
