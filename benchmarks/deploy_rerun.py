"""`resnest-deploy deploy` on resnest50: the first run, and what a rerun costs after nothing, an option, a file on
disk or an interrupt changed (whole process each, fresh interpreter).

Run:  .venv/bin/python benchmarks/deploy_rerun.py [--arch resnest50]

1. first run (the main job's settings: synthetic calibration, 64 images, the CPU INT8 model);
2. rerun with nothing changed (limit 10 s);
3. rerun with --calib-size 65: only INT8 and what uses it may run;
4. the FP16 ONNX edited on disk (same size, other bytes): detected and rebuilt;
5. SIGINT during the CPU latency step, then a rerun: every finished step kept.

Rewrites its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from doc_sections import write_section

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


def deploy(out: Path, arch: str, *extra: str, trace: Path | None = None, interrupt_at: str | None = None
           ) -> tuple[float, int, dict[str, str]]:
    """Run deploy; returns (seconds, exit code, step -> status)."""
    args = [sys.executable, "-m", "resnest_deploy", "deploy", "--arch", arch, "--calib-data", "synthetic",
            "--calib-size", "64", "--cpu-precision", "int8", "--output", str(out), *extra]
    env = {**os.environ, "COLUMNS": "200"}
    if trace:
        env["RESNEST_DEPLOY_TRACE"] = str(trace)
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if interrupt_at:
        while interrupt_at not in (trace.read_text() if trace and trace.exists() else ""):
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    statuses = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 2 and cells[1] in ("ran", "up to date", "failed"):
            statuses[cells[0]] = cells[1]
    if interrupt_at:
        statuses["(stderr)"] = stderr.strip()
    return seconds, proc.returncode, statuses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="resnest50")
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        first = deploy(out, options.arch)
        rows.append(("first run", *first))
        rows.append(("rerun, nothing changed", *deploy(out, options.arch)))
        rows.append(("rerun, --calib-size 65", *deploy(out, options.arch, "--calib-size", "65")))
        deploy(out, options.arch)  # back to 64
        fp16 = out / "onnx" / f"{options.arch}.fp16.onnx"
        fp16.write_bytes(fp16.read_bytes()[:-16] + b"edited-on-disk!!")
        rows.append(("rerun, FP16 ONNX edited on disk", *deploy(out, options.arch)))
        (out / "reports" / f"{options.arch}.cpu.bench.json").unlink()
        trace = Path(tmp) / "trace.txt"
        rows.append(("SIGINT during latency cpu", *deploy(out, options.arch, trace=trace,
                                                           interrupt_at="latency cpu")))
        rows.append(("rerun after the SIGINT", *deploy(out, options.arch)))
    lines = [f"`{options.arch}`, random init with BatchNorm re-estimated, synthetic calibration (64 images), "
             f"2 threads, whole process in a fresh interpreter each time. Measured {time.strftime('%Y-%m-%d')} with "
             "`.venv/bin/python benchmarks/deploy_rerun.py`. The no-change rerun's limit is 10 s.", "",
             "| run | seconds | exit | steps that ran |", "| --- | ---: | ---: | --- |"]
    for name, seconds, code, statuses in rows:
        ran = [k for k, v in statuses.items() if v in ("ran", "failed")]
        extra = f" ({statuses['(stderr)']})" if "(stderr)" in statuses else ""
        lines.append(f"| {name} | {seconds:.1f} | {code} | {', '.join(ran) or 'none'}{extra} |")
    section = "\n".join(lines)
    write_section(DOC, "deploy_rerun", section, "`deploy`: first run and reruns (benchmarks/deploy_rerun.py)")
    print(section)


if __name__ == "__main__":
    main()
