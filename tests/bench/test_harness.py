"""`bench` on real exports: every field of the JSON, ratios, and bad input."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_one_line_error

SMALL = 64


@pytest.mark.xdist_group("resnet18")
def test_bench_writes_every_field(export_cache, cli, tmp_path):
    artifact = export_cache("resnet18", SMALL).path
    report = tmp_path / "b.bench.json"
    result = cli("bench", str(artifact), "--bench-batch", "1,2", "--iters", "3", "--warmup", "1", "--threads", "2",
                 "--output", str(report))
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["schema"] == "resnest-deploy/bench/1" and data["arch"] == "resnet18"
    assert data["weights"] == "random-init+bn-reestimated(seed=0)"
    env = data["environment"]
    assert env["threads"] == 2 and env["cores"] >= 1 and env["cpu"] and env["torch"] and env["onnxruntime"]
    assert data["peak_rss_mb"] > 0
    rows = data["rows"]
    assert sorted((r["backend"], r["batch"]) for r in rows) == [("eager", 1), ("eager", 2), ("ort", 1), ("ort", 2)]
    for r in rows:
        assert r["iters"] == 3
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["mean_ms"] > 0 and r["std_ms"] >= 0 and r["throughput_ips"] > 0
        expected = 1.0 if r["backend"] == "eager" else r["p50_ms"] / next(
            e["p50_ms"] for e in rows if e["backend"] == "eager" and e["batch"] == r["batch"])
        assert r["ratio_vs_eager"] == pytest.approx(expected)
    assert "onnxruntime[CPU] fp32" in next(r["name"] for r in rows if r["backend"] == "ort")
    assert report.with_suffix(".md").read_text().startswith("# Latency")


@pytest.mark.xdist_group("resnet18")
def test_bench_bad_input(export_cache, cli):
    artifact = str(export_cache("resnet18", SMALL).path)
    assert_one_line_error(cli("bench", artifact, "--backends", "eager,tvm"), "--backends",
                          "'tvm' is not one of eager, compile, ort, trt")
    assert_one_line_error(cli("bench", artifact, "--arch", "resnest50"), "exported from resnet18")
    assert_one_line_error(cli("bench", artifact, "--bench-batch", "0"), "--bench-batch")
    assert_one_line_error(cli("bench", artifact, "--bench-batch", "one"), "--bench-batch")
    assert_one_line_error(cli("bench", artifact, "--backends", "trt"), "no CUDA device")


def test_contenders_follow_the_host():
    """CPU-only hosts compare with eager FP32 on the CPU; CUDA hosts with eager on the GPU (FP32 exact, FP16,
    FP16 channels-last) and, on request, torch.compile reduce-overhead; the first eager contender is the
    ratios' reference."""
    from resnest_deploy.bench.contenders import eager_contenders
    from resnest_deploy.errors import ConfigError

    assert [s.label for s in eager_contenders(("eager", "ort"), cuda=False)] == ["eager[cpu,fp32]"]
    gpu = eager_contenders(("eager", "compile", "trt"), cuda=True)
    assert [(s.device, s.precision, s.channels_last, s.compiled) for s in gpu] == [
        ("cuda", "fp32", False, False), ("cuda", "fp16", False, False), ("cuda", "fp16", True, False),
        ("cuda", "fp16", True, True)]
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        eager_contenders(("eager", "compile"), cuda=False)


def test_a_compile_contender_always_gets_three_warm_up_rounds():
    """torch.compile(reduce-overhead) records CUDA graphs in its first calls: fewer warm-up rounds would time the
    recording (the rule only; the contender itself needs a GPU)."""
    from resnest_deploy.bench.harness import COMPILE_WARMUP, _Loaded, warmup_rounds

    def contender(backend):
        return _Loaded("x", backend, "fp32", lambda x: (lambda: None, None), None, 0.0)

    for asked in (0, 1, 2, 3, 10):
        assert warmup_rounds([contender("eager"), contender("ort")], asked) == asked
        assert warmup_rounds([contender("eager"), contender("compile")], asked) == max(asked, COMPILE_WARMUP)
