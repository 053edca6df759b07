"""The one definition of every parity metric (resnest_deploy/metrics.py), used by parity, quantize and export."""

from __future__ import annotations

import numpy as np
import pytest

from resnest_deploy.metrics import compare_logits, max_abs_rel


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
