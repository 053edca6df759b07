"""A stand-in GPU host for the scripts this tool writes (a target's build.sh, ``build --emit-script``).

No GPU or TensorRT is involved. ``nvidia-smi`` answers ``-L``, the compute capability and the driver version from
the environment (``NO_GPU``, ``HOST_CC``, ``HOST_DRIVER``); ``$PYTHON`` is a small Python program that answers the import
and TensorRT-version probes (``MISSING``, ``HOST_TRT``), records every ``resnest_deploy`` command it is asked to run
(its arguments, working folder and ``PYTHONPATH``) in ``CALLS``, writes an engine and its manifest where
``build`` is told to (``FAIL_BUILD`` fails it), and exits as ``doctor`` and ``parity`` are told to
(``DOCTOR_EXIT``, ``PARITY_EXIT``). Anything else it is asked (a heredoc script on stdin) runs on a real Python.
The variables are named apart from the scripts' own (``CC``, ``TRT``), so a script that fails to set one of its
own cannot inherit the stand-in's value. Both refuse a query or probe the scripts do not make.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

_NVIDIA_SMI = """#!/bin/sh
case "$*" in
  -L) [ -n "${NO_GPU:-}" ] && exit 9; echo "GPU 0: Stand-in (UUID: GPU-0)";;
  "--query-gpu=compute_cap --format=csv,noheader") [ -n "$HOST_CC" ] && echo "$HOST_CC" || exit 6;;
  "--query-gpu=driver_version --format=csv,noheader") echo "$HOST_DRIVER";;
  *) echo "stand-in nvidia-smi: not a query the scripts make: $*" >&2; exit 2;;
esac
"""

_PYTHON = """#!{python}
import json, os, sys
args = sys.argv[1:]
if args[:1] == ["-"]:
    os.execv(sys.executable, [sys.executable, *args])
if args[:1] == ["-c"]:
    if args[1] == "import tensorrt; print(tensorrt.__version__)":
        print(os.environ["HOST_TRT"])
        sys.exit(0)
    if args[1] == "import {imports}":
        sys.exit(1 if os.environ.get("MISSING") else 0)
    sys.exit("stand-in python: not a probe the scripts make: " + args[1])
with open(os.environ["CALLS"], "a") as log:
    log.write(json.dumps({{"args": args, "cwd": os.getcwd(), "path": os.environ.get("PYTHONPATH", "")}}) + "\\n")
command = args[2] if args[:2] == ["-m", "resnest_deploy"] else None
if command == "doctor":
    sys.exit(int(os.environ.get("DOCTOR_EXIT", "0")))
if command == "build":
    if os.environ.get("FAIL_BUILD"):
        sys.exit(1)
    out = args[args.index("--output") + 1]
    open(out, "w").write("plan")
    json.dump({{"engine": {{"tensorrt": os.environ["HOST_TRT"]}}}}, open(out + ".json", "w"))
if command == "parity":
    sys.exit(int(os.environ.get("PARITY_EXIT", "0")))
"""


def make_host(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The stand-in GPU host in ``tmp_path``: (the environment a script runs with, the file its commands are
    recorded in). ``tests/conftest.py``'s ``host`` fixture makes one per test."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text(_NVIDIA_SMI)
    from resnest_deploy.exporters.build_script import PREAMBLE_VALUES

    (fake / "python").write_text(_PYTHON.format(python=sys.executable, imports=PREAMBLE_VALUES["imports"]))
    for tool in fake.iterdir():
        tool.chmod(0o755)
    calls_file = tmp_path / "calls.jsonl"
    env = {"PATH": f"{fake}:/usr/bin:/bin", "PYTHON": str(fake / "python"), "CALLS": str(calls_file), "HOST_CC": "8.9",
           "HOST_DRIVER": "550.54.15", "HOST_TRT": "10.16.1.11", "HOME": str(tmp_path)}
    return env, calls_file


def calls(calls_file: Path) -> list[dict]:
    """The commands recorded so far, in order."""
    return [json.loads(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
