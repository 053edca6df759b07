"""The registry of named architectures: one frozen :class:`ModelConfig` per name, duplicates refused."""

from __future__ import annotations

import difflib
import fnmatch

from ..errors import UnknownArchError
from .config import ModelConfig

_REGISTRY: dict[str, ModelConfig] = {}


def register(cfg: ModelConfig) -> ModelConfig:
    """Add ``cfg`` to the registry under ``cfg.name``.

    Raises:
        ValueError: A config with that name is already registered.
    """
    if cfg.name in _REGISTRY:
        raise ValueError(f"architecture {cfg.name!r} is already registered")
    _REGISTRY[cfg.name] = cfg
    return cfg


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard ``pattern`` (case-insensitive), sorted."""
    pattern = pattern.lower()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern))


def get_config(name: str) -> ModelConfig:
    """The config registered under ``name``.

    Raises:
        UnknownArchError: No such name; the message suggests the closest registered names.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `resnest-deploy models` to list them"
        raise UnknownArchError(f"unknown architecture {name!r}{hint}") from None


def matching_models(pattern: str) -> list[str]:
    """Like :func:`list_models`, but an error when nothing matches (a typo should not print an empty list).

    Raises:
        UnknownArchError: No registered name matches; the message suggests the closest ones.
    """
    names = list_models(pattern)
    if not names:
        close = difflib.get_close_matches(pattern.lower().strip("*?"), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `resnest-deploy models` to list them"
        raise UnknownArchError(f"no architecture matches {pattern!r}{hint}")
    return names
