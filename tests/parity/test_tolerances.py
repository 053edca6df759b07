"""Which preset judges an artifact, from what the artifact is (precision, TF32, provenance), and why."""

from __future__ import annotations

from dataclasses import replace

import pytest
from resnest_deploy.exporters.metadata import ArtifactMeta, InputConfig
from resnest_deploy.exporters.tensorrt_options import EngineRecord

from resnest_deploy.errors import ConfigError
from resnest_deploy.parity.tolerances import PRESETS, judgement_for, judgement_of


def _meta(precision: str, *, checkpoint: bool) -> ArtifactMeta:
    return ArtifactMeta(arch="resnet18", num_classes=10, input=InputConfig(), weights="w",
                        weights_sha256="ab" * 32 if checkpoint else None, seed=None if checkpoint else 0,
                        precision=precision)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_a_checkpoint_artifact_is_judged_by_its_precision(precision):
    judgement = judgement_for(precision, random_init=False)
    assert judgement.preset == precision and judgement.reason == f"{precision} artifact"
    assert judgement.tolerances == PRESETS[precision]
    assert judgement.tolerances.top1_agreement is not None


def test_tf32_changes_only_an_fp32_artifact_and_says_why():
    tf32 = judgement_for("fp32", random_init=False, tf32=True)
    assert tf32.preset == "tf32"
    assert tf32.reason == "FP32 engine built with TF32 allowed: convolutions round inputs to a 10-bit mantissa"
    assert judgement_for("fp16", random_init=False, tf32=True).preset == "fp16"
    assert judgement_for("fp32", random_init=False).preset == "fp32"  # TF32 off unless said


@pytest.mark.parametrize(("precision", "tf32", "preset"), [("fp16", False, "fp16-random-init"),
                                                           ("int8", False, "int8-random-init"),
                                                           ("fp32", True, "tf32-random-init")])
def test_a_random_init_reduced_precision_artifact_is_not_judged_by_top1(precision, tf32, preset):
    judgement = judgement_for(precision, random_init=True, tf32=tf32)
    assert judgement.preset == preset and judgement.tolerances.top1_agreement is None
    judged = [k for k, v in PRESETS[preset].to_dict().items() if v is not None]
    assert judgement.reason.endswith(f"of a random-init model: its logits are near ties, so it is judged by "
                                     f"{', '.join(judged)}, not top-1 agreement")
    assert "top1_agreement" not in judged and judged


def test_random_init_fp32_keeps_every_limit():
    assert judgement_for("fp32", random_init=True) == judgement_for("fp32", random_init=False)


def test_an_unknown_precision_is_a_config_error_naming_it():
    with pytest.raises(ConfigError) as info:
        judgement_for("bf16", random_init=False)
    assert str(info.value) == "precision takes one of fp32, fp16, int8, got 'bf16'"


def test_judgement_of_reads_provenance_and_tf32_from_the_artifact():
    assert judgement_of(None).preset == "fp32"
    assert judgement_of(_meta("int8", checkpoint=True)).preset == "int8"
    assert judgement_of(_meta("int8", checkpoint=False)).preset == "int8-random-init"
    assert judgement_of(_meta("fp32", checkpoint=False), EngineRecord(tf32=True)).preset == "tf32-random-init"
    assert judgement_of(_meta("fp32", checkpoint=True), EngineRecord(tf32=True)).preset == "tf32"
    assert judgement_of(_meta("fp32", checkpoint=True), EngineRecord(tf32=False)).preset == "fp32"
    assert judgement_of(_meta("fp16", checkpoint=True), EngineRecord(tf32=True)).preset == "fp16"
    # No checkpoint and no seed (a foreign graph's metadata): not known to be random-init.
    assert judgement_of(replace(_meta("int8", checkpoint=False), seed=None)).preset == "int8"
    # A checkpoint's hash decides even when a seed is recorded beside it.
    assert judgement_of(replace(_meta("int8", checkpoint=True), seed=3)).preset == "int8"


@pytest.mark.parametrize("met, checkpoint, precision, preset", [
    (True, True, "int8", "int8-budget"), (False, True, "int8", "int8"), (True, False, "int8", "int8-random-init"),
    (True, True, "fp16", "fp16"),
])
def test_an_int8_graph_that_met_its_accuracy_budget_is_judged_by_top1_only(met, checkpoint, precision, preset):
    meta = _meta(precision, checkpoint=checkpoint)
    budget = {"met": met, "goal": {"description": "top-1 within 1 point of FP32 (76.10%)"}}
    meta = replace(meta, extra={**meta.extra, "quantization": {"accuracy_budget": budget}})
    judgement = judgement_of(meta)
    assert judgement.preset == preset
    if preset == "int8-budget":
        assert "within 1 point of FP32" in judgement.reason
        assert {k for k, v in judgement.tolerances.to_dict().items() if v is not None} == {"top1_agreement"}
        assert judgement.tolerances.top1_agreement == PRESETS["int8"].top1_agreement
