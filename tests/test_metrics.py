"""The one definition of every parity metric (resnest_deploy/metrics.py), used by parity, quantize and export."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resnest_deploy.errors import ConfigError
from resnest_deploy.metrics import RANGES, ParityMetrics, Tolerances, compare_logits, judge, max_abs_rel

RANGES_ORDER = ("max_abs_rel", "cosine_min", "cosine_mean", "top1_agreement", "top5_overlap", "kl_mean")


def test_metrics_against_hand_computed_values():
    eager = np.array([[2.0, 1.0, 0.0, -1.0, -2.0, -3.0], [0.0, 3.0, 1.0, 0.0, 0.0, 0.0]])
    same = compare_logits(eager, eager.copy())
    assert same.max_abs == 0 and same.cosine_min == pytest.approx(1) and same.top1_agreement == 1
    assert same.kl_mean == pytest.approx(0, abs=1e-12)
    flipped = eager.copy()
    flipped[1, 2] = 4.0  # sample 1 now prefers class 2
    m = compare_logits(eager, flipped)
    assert m.max_abs == pytest.approx(3.0) and m.max_abs_rel == pytest.approx(1.0)
    assert m.top1_agreement == 0.5
    cos = (eager[1] @ flipped[1]) / (np.linalg.norm(eager[1]) * np.linalg.norm(flipped[1]))
    assert m.cosine_min == pytest.approx(cos)


def test_max_abs_rel_is_absolute_below_one_and_relative_above():
    """The definition chosen where parity (floor at 1) and quantize (no floor) used to disagree: near-zero
    logits must not turn rounding noise into a huge relative error, large logits are judged relatively."""
    small = np.array([[1e-3, -2e-3, 5e-4]])
    assert max_abs_rel(small, small + 1e-4) == pytest.approx(1e-4)
    large = np.array([[40.0, -10.0, 0.0]])
    assert max_abs_rel(large, large + np.array([[0.4, 0.0, 0.0]])) == pytest.approx(0.01)
    assert max_abs_rel(large, large[:, :2]) == float("inf")
    assert max_abs_rel(large, np.full_like(large, np.nan)) == float("inf")
    assert compare_logits(large, large + 0.4).max_abs_rel == pytest.approx(0.01)


# Every metric against an independent reference: torch's own softmax, KL divergence, cosine similarity and top-k,
# on generated logits (ties avoided: argsort and topk may order tied classes differently).
def _torch_reference(e: np.ndarray, a: np.ndarray) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    te, ta = torch.from_numpy(e), torch.from_numpy(a)
    k = min(5, e.shape[1])
    kl = F.kl_div(F.log_softmax(ta, dim=1), F.log_softmax(te, dim=1), reduction="none", log_target=True).sum(dim=1)
    cosine = F.cosine_similarity(te, ta, dim=1, eps=1e-300)
    top_e, top_a = te.topk(k, dim=1).indices, ta.topk(k, dim=1).indices
    overlap = [len(set(x.tolist()) & set(y.tolist())) / k for x, y in zip(top_e, top_a)]
    diff = (ta - te).abs()
    return {"samples": e.shape[0], "max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "max_rel": float((diff / te.abs().clamp(min=1e-3)).max()),
            "max_abs_rel": float(diff.max()) / max(1.0, float(te.abs().max())),
            "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
            "top1_agreement": float((top_e[:, 0] == top_a[:, 0]).double().mean()),
            "top5_overlap": float(np.mean(overlap)), "kl_mean": float(kl.mean()), "kl_max": float(kl.max())}


@st.composite
def _logit_pairs(draw):
    n = draw(st.integers(1, 6))
    classes = draw(st.integers(2, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-2, 1.0, 30.0]))
    rng = np.random.default_rng(seed)
    # Distinct values per row (a permutation of spaced levels plus small noise): no ties in any ranking.
    e = np.stack([rng.permutation(classes) + rng.uniform(0.05, 0.4, classes) for _ in range(n)]) * scale
    a = e + rng.normal(0, draw(st.sampled_from([0.0, 0.1, 1.0, 5.0])), e.shape) * scale
    a = np.stack([row if len(set(row)) == classes else row + np.arange(classes) * 1e-6 * scale for row in a])
    return e.astype(np.float32).astype(np.float64), a.astype(np.float32).astype(np.float64)


@settings(max_examples=60, deadline=None)
@given(_logit_pairs())
def test_every_metric_matches_torch(pair):
    e, a = pair
    got = compare_logits(e.astype(np.float32), a.astype(np.float32)).to_dict()
    want = _torch_reference(e, a)
    assert got["samples"] == want["samples"] and isinstance(got["samples"], int)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_softmax_is_per_sample_and_survives_large_logits():
    """KL compares each sample's own distribution: a sample's softmax must not depend on another sample's scale,
    and logits of 1000 must not overflow."""
    e = np.array([[1000.0, 999.0, 0.0], [0.0, 1.0, 2.0]])
    a = np.array([[1000.0, 998.0, 0.0], [0.0, 1.0, 2.5]])
    m = compare_logits(e, a)
    want = _torch_reference(e, a)
    assert np.isfinite(m.kl_max) and m.kl_max == pytest.approx(want["kl_max"], rel=1e-9)
    assert m.kl_mean == pytest.approx(want["kl_mean"], rel=1e-9)
    alone = compare_logits(e[1:], a[1:])
    assert alone.kl_max == pytest.approx(_torch_reference(e[1:], a[1:])["kl_max"], rel=1e-9)


def test_a_zero_logit_vector_has_cosine_one_only_when_both_are_zero():
    zero = np.zeros((1, 4))
    assert compare_logits(zero, zero).cosine_min == 1.0
    assert compare_logits(zero, np.array([[1.0, 0.0, 0.0, 0.0]])).cosine_min == 1.0  # undefined: not judged worse
    tiny = np.array([[1e-3, 0.0, 0.0, 0.0]])
    assert compare_logits(tiny, -tiny).cosine_min == pytest.approx(-1.0)


def test_top5_uses_all_classes_when_there_are_fewer_than_five():
    e = np.array([[3.0, 2.0, 1.0]])
    assert compare_logits(e, e[:, ::-1].copy()).top5_overlap == 1.0
    six = np.array([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    assert compare_logits(six, six[:, ::-1].copy()).top5_overlap == pytest.approx(4 / 5)


def test_max_abs_rel_of_empty_arrays_is_zero_and_floor_is_a_parameter():
    assert max_abs_rel(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    assert max_abs_rel(np.array([[0.5]]), np.array([[0.6]]), floor=0.25) == pytest.approx(0.2)
    assert max_abs_rel(np.array([[1e9]], dtype=np.float32), np.array([[1e9 + 64]], dtype=np.float32)) > 0


# Limits: every metric's range, its edges, and values that are no limit.
@pytest.mark.parametrize("name", sorted(RANGES))
def test_each_limit_is_accepted_inside_its_range_and_refused_outside(name):
    low, high = RANGES[name]
    inside = [low, (low + high) / 2 if math.isfinite(high) else low + 1e6]
    if math.isfinite(high):
        inside.append(high)
    for value in inside:
        assert getattr(Tolerances().with_overrides({name: value}), name) == value
    outside = [low - 1e-9, float("nan"), float("inf"), float("-inf"), True, "0.5", None]
    if math.isfinite(high):
        outside.append(high + 1e-9)
    shown = f"{low:g}..{high:g}" if math.isfinite(high) else f">= {low:g}"
    for value in outside:
        with pytest.raises(ConfigError) as info:
            Tolerances().with_overrides({name: value})
        assert str(info.value) == f"--tol {name}={value!r} is not a finite limit in {shown}"


def test_an_unknown_limit_is_named_with_the_known_ones():
    with pytest.raises(ConfigError) as info:
        Tolerances().with_overrides({"cosine_min": 0.5, "top_1": 1.0, "kl": 0.1})
    known = ", ".join(sorted(RANGES))
    assert str(info.value) == f"unknown tolerance kl, top_1; known: {known}"


def test_overrides_replace_only_what_they_name():
    base = Tolerances(max_abs_rel=1e-4, cosine_min=0.999)
    new = base.with_overrides({"cosine_min": 0.5, "kl_mean": 0.25})
    assert new == Tolerances(max_abs_rel=1e-4, cosine_min=0.5, kl_mean=0.25) and base.cosine_min == 0.999


def _metrics(**values) -> ParityMetrics:
    base = dict(samples=4, max_abs=0.0, max_abs_rel=0.0, mean_abs=0.0, max_rel=0.0, cosine_min=1.0,
                cosine_mean=1.0, top1_agreement=1.0, top5_overlap=1.0, kl_mean=0.0, kl_max=0.0)
    return ParityMetrics(**{**base, **values})


def test_judge_checks_each_set_limit_in_its_direction_and_collects_every_failure():
    limits = Tolerances(max_abs_rel=0.1, cosine_min=0.9, cosine_mean=0.95, top1_agreement=0.5, top5_overlap=0.6,
                        kl_mean=0.2)
    at_limits = judge(_metrics(max_abs_rel=0.1, cosine_min=0.9, cosine_mean=0.95, top1_agreement=0.5,
                               top5_overlap=0.6, kl_mean=0.2), limits)
    assert [c.name for c in at_limits] == list(RANGES_ORDER) and all(c.passed for c in at_limits)
    assert [c.detail for c in at_limits] == ["0.1 <= 0.1", "0.9 >= 0.9", "0.95 >= 0.95", "0.5 >= 0.5", "0.6 >= 0.6",
                                             "0.2 <= 0.2"]
    assert [(c.value, c.limit) for c in at_limits] == [(0.1, 0.1), (0.9, 0.9), (0.95, 0.95), (0.5, 0.5),
                                                       (0.6, 0.6), (0.2, 0.2)]
    beyond = judge(_metrics(max_abs_rel=0.11, cosine_min=0.89, cosine_mean=0.94, top1_agreement=0.49,
                            top5_overlap=0.59, kl_mean=0.21), limits)
    assert [c.passed for c in beyond] == [False] * 6
    better = judge(_metrics(max_abs_rel=0.0, cosine_min=1.0, cosine_mean=1.0, top1_agreement=1.0, top5_overlap=1.0,
                            kl_mean=0.0), limits)
    assert all(c.passed for c in better)


def test_judge_skips_unset_limits_and_fails_non_finite_values_whatever_the_limit():
    only = judge(_metrics(cosine_min=0.2), Tolerances(kl_mean=1.0))
    assert [(c.name, c.passed) for c in only] == [("kl_mean", True)]
    assert judge(_metrics(), Tolerances()) == []
    for bad in (float("nan"), float("inf")):
        checks = judge(_metrics(max_abs_rel=bad, cosine_min=bad), Tolerances(max_abs_rel=float("inf"), cosine_min=-1))
        assert [c.passed for c in checks] == [False, False]
