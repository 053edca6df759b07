"""What each deploy step consumed and produced, so a rerun redoes only what changed.

A step's record holds content hashes of its input files, a hash of its options and of the tool and library
versions that shape its output, and the hashes of the files it wrote. A step is up to date when its record
matches and every output still exists with its recorded hash; a changed input, option or version, or an output
edited or deleted on disk, reruns the step, and a rerun step that writes different bytes makes its dependents
rerun in turn. Hashes are cached by (size, mtime): a file whose size and modification time are unchanged is not
read again. The records live in ``<run>/deploy-state.json``, written atomically after every finished step, so an
interrupted run keeps every step it finished; files inside the run folder are recorded by their path relative to
it, so a run folder can be moved or copied and stay up to date. (A task runner with content-hash dependencies,
such as doit, was considered; the mechanism here is one small module with no new dependency.)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..hashing import file_sha256, record_sha256
from ..paths import real_path
from ..versions import STEP_LIBRARIES, library_versions

STATE_FILE = "deploy-state.json"


@dataclass
class Decision:
    """Whether a step must run, and why (for ``--dry-run`` and the final table)."""

    run: bool
    reason: str


@dataclass
class RunState:
    """The records of every finished step of one run folder."""

    path: Path
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    _hashes: dict[str, dict[str, Any]] = field(default_factory=dict)
    arch: str | None = None  # the architecture the folder's run was for

    @classmethod
    def load(cls, run_dir: Path) -> RunState:
        """The state of ``run_dir`` (empty when there is none, or when it cannot be read: every step reruns)."""
        path = Path(run_dir) / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            data = {}
        data = data if isinstance(data, dict) else {}
        raw = data.get("steps") if isinstance(data.get("steps"), dict) else {}
        steps = {name: r for name, r in raw.items() if isinstance(r, dict) and all(
            isinstance(r.get(k, {}), dict) for k in ("inputs", "outputs"))}  # a damaged record reruns its step
        hashes = {}
        for record in steps.values():
            for name, entry in {**record.get("inputs", {}), **record.get("outputs", {})}.items():
                if isinstance(entry, dict):
                    hashes[name] = entry
        arch = data.get("arch") if isinstance(data.get("arch"), str) else None
        return cls(path, steps, hashes, arch)

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    def key(self, path: Path) -> str:
        """How a file is named in the records: relative to the run folder when inside it, else absolute."""
        resolved = real_path(path)
        try:
            return str(resolved.relative_to(real_path(self.path.parent)))
        except ValueError:
            return str(resolved)

    def fingerprint(self, path: Path) -> dict[str, Any] | None:
        """``{sha256, size, mtime_ns}`` of a file (None when missing); re-read only when size or mtime changed."""
        try:
            info = path.stat()
        except OSError:
            return None
        if not path.is_file():
            return None
        cached = self._hashes.get(self.key(path))
        if cached and cached.get("size") == info.st_size and cached.get("mtime_ns") == info.st_mtime_ns:
            return cached
        entry = {"sha256": file_sha256(path), "size": info.st_size, "mtime_ns": info.st_mtime_ns}
        self._hashes[self.key(path)] = entry
        return entry

    def decide(self, name: str, inputs: list[Path], options: dict[str, Any], outputs: list[Path],
               force: bool = False) -> Decision:
        """Whether step ``name`` must run with these inputs, options and outputs."""
        if force:
            return Decision(True, "forced (--force)")
        record = self.steps.get(name)
        if record is None:
            return Decision(True, "never ran here")
        changed = self._changed(record.get("inputs", {}), inputs, "input", "changed")
        if changed:
            return changed
        if set(record.get("inputs", {})) != {self.key(p) for p in inputs}:
            return Decision(True, "its inputs are not the same files")
        if record.get("options") != record_sha256(options):
            return Decision(True, "options changed")
        if record.get("versions") != library_versions(STEP_LIBRARIES):
            return Decision(True, "tool or library versions changed")
        changed = self._changed(record.get("outputs", {}), outputs, "output", "was changed on disk")
        if changed:
            return changed
        return Decision(False, "up to date")

    def _changed(self, recorded: dict[str, Any], paths: list[Path], kind: str, verb: str) -> Decision | None:
        """The first of ``paths`` missing or differing from its recorded hash, as a decision to run."""
        for path in paths:
            now = self.fingerprint(path)
            before = recorded.get(self.key(path))
            if now is None:
                return Decision(True, f"{kind} {path.name} is missing")
            if not before or before.get("sha256") != now["sha256"]:
                return Decision(True, f"{kind} {path.name} {verb}")
        return None

    def record(self, name: str, inputs: list[Path], options: dict[str, Any], outputs: list[Path], *, status: str,
               seconds: float, note: str = "", warnings: list[str] | None = None) -> None:
        """Store a finished step and write the state file atomically."""
        self.steps[name] = {
            "inputs": {self.key(p): self.fingerprint(p) for p in inputs},
            "options": record_sha256(options), "versions": library_versions(STEP_LIBRARIES),
            "outputs": {self.key(p): self.fingerprint(p) for p in outputs if p.exists()},
            "status": status, "seconds": round(seconds, 2), "note": note, "warnings": list(warnings or []),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self.save()

    def forget(self, name: str) -> None:
        """Drop a step's record (it failed with an error: it must run again)."""
        if self.steps.pop(name, None) is not None:
            self.save()

    def keep_only(self, names: set[str]) -> None:
        """Drop the records of steps this run does not have (an earlier run's, with other options)."""
        dropped = set(self.steps) - names
        for name in dropped:
            del self.steps[name]
        if dropped:
            self.save()

    def save(self) -> None:
        os.makedirs(self.path.parent, exist_ok=True)
        body = {"schema": "resnest-deploy/deploy-state/1", "arch": self.arch, "steps": self.steps}
        write_text_atomic(self.path, json.dumps(body, indent=1, sort_keys=True) + "\n")
