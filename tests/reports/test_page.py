"""The run report page built from real parity and bench reports."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image

from resnest_deploy.bench.harness import BenchOptions, run_bench
from resnest_deploy.bench.harness import write_reports as write_bench
from resnest_deploy.errors import ConfigError
from resnest_deploy.parity import ParityOptions, run_parity, write_reports
from resnest_deploy.reports import build_report


@pytest.mark.xdist_group("resnet18")
def test_report_page_has_tables_and_real_plots(export_cache, tmp_path):
    artifact = export_cache("resnet18", 64).path
    run = tmp_path / "run"
    write_reports(run_parity(ParityOptions(artifact=artifact, samples=8)), run / "r18.parity.json")
    bench = run_bench(BenchOptions(artifacts=(artifact,), batches=(1, 2), iters=2, warmup=1))
    write_bench(bench, run / "r18.bench.json")
    html_path, md_path = build_report(run)
    page = html_path.read_text()
    assert "Parity vs eager PyTorch" in page and "Latency (interleaved rounds)" in page
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == 2
    for encoded in images:
        picture = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert picture.format == "PNG" and picture.size[0] > 300 and picture.size[1] > 200
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched
    summary = md_path.read_text()
    assert "## Parity" in summary and "## Latency" in summary and "resnet18" in summary


def test_report_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        build_report(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no parity or bench reports"):
        build_report(tmp_path)
