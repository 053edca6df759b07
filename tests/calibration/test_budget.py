"""The accuracy-budget search alone, over generated score tables (the real graphs are in test_budgeted.py).

``measure`` here is a stand-in for "build the INT8 graph with these blocks float and score it on the accuracy
data": a table of what each quantized block costs, plus a deterministic interaction term, so that hypothesis can
draw thousands of networks whose blocks interact the way real ones do (costs that do not add up, blocks that
help alone and hurt together). The properties are the issue's: the chosen mix never exceeds the budget on the
search data, a budget plain INT8 meets keeps nothing float, and the same measurements give the same result.
"""

from __future__ import annotations

import hashlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resnest_deploy.calibration.budget import (ACCURACY, AGREEMENT, Goal, check_limit, images_needed, search)
from resnest_deploy.errors import ConfigError


class TableNetwork:
    """Stand-in for a network scored on accuracy data: each quantized block loses ``harm[b]`` points, pairs of
    quantized blocks lose a little more or less (``mix``, from a hash, so it is the same every call), rounded to
    whole images of ``images``."""

    def __init__(self, harm: dict[str, float], mix: float, images: int, reference: float = 90.0):
        self.harm, self.mix, self.images, self.reference = harm, mix, images, reference
        self.calls: list[tuple[str, ...]] = []

    def measure(self, kept: tuple[str, ...]) -> tuple[float, float]:
        self.calls.append(kept)
        quantized = sorted(b for b in self.harm if b not in kept)
        lost = sum(self.harm[b] for b in quantized)
        for a, b in zip(quantized, quantized[1:]):
            h = int(hashlib.sha256(f"{a}|{b}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            lost += self.mix * (h - 0.3)
        step = 100.0 / self.images
        score = max(0.0, self.reference - round(max(lost, 0.0) / step) * step)
        return score, 0.1 + lost / 100.0


blocks = st.lists(st.sampled_from(["stem", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer4.0",
                                   "layer4.1", "fc"]), min_size=1, max_size=9, unique=True)


@st.composite
def networks(draw):
    names = draw(blocks)
    harm = {b: draw(st.floats(0, 12, allow_nan=False)) for b in names}
    return TableNetwork(harm, draw(st.floats(0, 4)), draw(st.integers(100, 2000)))


@given(networks(), st.floats(0.1, 10), st.integers(1, 80), st.none() | st.floats(0, 4))
@settings(max_examples=200, deadline=None)
def test_the_chosen_mix_never_exceeds_the_budget_on_the_search_data(net, budget, max_trials, sample_noise):
    """With or without a sample for step 2 (a table whose costs differ from the full data's, as a sample's do)."""
    goal = Goal(ACCURACY, budget, net.reference)
    sample = None if sample_noise is None else TableNetwork(
        {b: max(0.0, h + sample_noise * (i % 3 - 1)) for i, (b, h) in enumerate(net.harm.items())}, net.mix, 64)
    result = search(list(net.harm), net.measure, goal, max_trials=max_trials,
                    rank_measure=None if sample is None else sample.measure)
    assert not result.chosen.sample and all(t.sample == (sample is not None) for t in result.trials
                                            if t.phase == "sensitivity")
    assert len(result.trials) <= max_trials
    assert len(set(net.calls)) == len(net.calls)  # a mix is measured once (on each data)
    keeps = [t for t in result.trials if t.phase == "keep"]
    assert not any(goal.meets(t.score) for t in keeps[:-1])  # the greedy steps stop at the first mix that meets
    if result.met:
        score, _ = TableNetwork(net.harm, net.mix, net.images).measure(result.chosen.kept)
        assert score >= net.reference - budget - 1e-9
        assert len(result.chosen.kept) < len(net.harm) or not result.chosen.kept
    else:
        whole = [t for t in result.trials if not t.sample]
        assert result.chosen.score == max(t.score for t in whole)
        assert all(t.score < net.reference - budget + 1e-9 for t in whole)
        assert result.stop in ("max-trials", "exhausted")
        assert result.stop == "exhausted" or len(result.trials) == max_trials


@given(networks(), st.integers(1, 80))
@settings(max_examples=100, deadline=None)
def test_a_budget_plain_int8_meets_keeps_nothing_float(net, max_trials):
    plain, _ = TableNetwork(net.harm, net.mix, net.images).measure(())
    budget = net.reference - plain + 0.01
    result = search(list(net.harm), net.measure, Goal(ACCURACY, budget, net.reference), max_trials=max_trials)
    assert result.met and result.chosen.kept == () and result.stop == "plain"
    assert net.calls == [()]


@given(networks(), st.floats(0.1, 10), st.integers(1, 80))
@settings(max_examples=100, deadline=None)
def test_the_same_measurements_give_the_same_result(net, budget, max_trials):
    goal = Goal(ACCURACY, budget, net.reference)
    first = search(list(net.harm), net.measure, goal, max_trials=max_trials)
    again = TableNetwork(net.harm, net.mix, net.images)
    second = search(list(net.harm), again.measure, goal, max_trials=max_trials)
    assert first.chosen == second.chosen and first.trials == second.trials and first.costs == second.costs


def test_the_most_harmful_block_is_kept_float_first():
    net = TableNetwork({"stem": 1.0, "layer1.0": 0.0, "layer2.0": 6.0, "layer3.0": 2.0}, 0.0, 1000)
    events = []
    result = search(list(net.harm), net.measure, Goal(ACCURACY, 1.5, net.reference),
                    progress=lambda *event: events.append(event))
    assert result.met and result.chosen.kept == ("layer2.0", "layer3.0")
    assert [(c.block, c.drop) for c in result.costs] == [("layer2.0", 6.0), ("layer3.0", 2.0), ("stem", 1.0),
                                                         ("layer1.0", 0.0)]
    # giving back layer3.0 is the mix the first keep step measured: measured once, not twice
    assert [t.phase for t in result.trials] == ["plain", *["sensitivity"] * 4, "keep", "keep", "give-back"]
    assert events[0] == ("accuracy budget (best 81.00% with 0 float)", 1, 64)
    # the best so far: a mix that meets the budget with the fewest float blocks
    assert events[1] == ("accuracy budget (best 89.00% with 3 float)", 2, 64)
    assert events[-1] == ("accuracy budget (best 89.00% with 2 float)", 8, 64)


def _table(scores):
    calls = []

    def measure(kept):
        calls.append(tuple(sorted(kept)))
        return scores[tuple(sorted(kept))], 0.0

    return measure, calls


# Mixes of four blocks a-d (reference 90, budget 1): quantized alone, c costs 5, b 3, a 0.5, d 0.2.
SENSITIVITY = {(): 80.0, ("b", "c", "d"): 89.5, ("a", "c", "d"): 87.0, ("a", "b", "d"): 85.0, ("a", "b", "c"): 89.8,
               ("c",): 85.0, ("b", "c"): 88.0, ("a",): 81.0, ("b",): 83.0}


def test_give_back_requantizes_a_block_a_later_one_made_unnecessary():
    # blocks that do not add up: with a and c float, b is not needed any more
    measure, calls = _table({**SENSITIVITY, ("a", "c"): 89.2})
    result = search(["a", "b", "c", "d"], measure, Goal(ACCURACY, 1.0, 90.0))
    assert [c.block for c in result.costs] == ["c", "b", "a", "d"]
    assert result.met and sorted(result.chosen.kept) == ["a", "c"] and result.chosen.phase == "give-back"
    assert calls == [(), ("b", "c", "d"), ("a", "c", "d"), ("a", "b", "d"), ("a", "b", "c"), ("c",), ("b", "c"),
                     ("a", "c"), ("a",)]


def test_give_back_tries_the_cheapest_kept_block_first():
    # giving back b or c alone would each meet, but not both: b goes first, being the cheaper
    measure, _ = _table({**SENSITIVITY, ("a", "c"): 89.2, ("a", "b"): 89.3})
    result = search(["a", "b", "c", "d"], measure, Goal(ACCURACY, 1.0, 90.0))
    assert result.met and sorted(result.chosen.kept) == ["a", "c"]


def test_a_sample_only_orders_the_blocks():
    # on the sample, quantizing b alone costs little and keeping a float "meets" the budget; on all the search data
    # it does not: mixes scored on the sample are never the result
    sample, sample_calls = _table({("b",): 60.0, ("a",): 94.0})
    full, full_calls = _table({(): 80.0, ("a",): 88.0})
    result = search(["a", "b"], full, Goal(ACCURACY, 1.0, 90.0), rank_measure=sample, rank_reference=(95.0, 0.0))
    assert sample_calls == [("b",), ("a",)] and full_calls == [(), ("a",)]
    assert [(c.block, c.drop) for c in result.costs] == [("a", 35.0), ("b", 1.0)]
    assert not result.met and result.stop == "exhausted"
    assert result.chosen.kept == ("a",) and result.chosen.score == 88.0 and not result.chosen.sample


@pytest.mark.parametrize("kind, limit, reference, at, below", [(ACCURACY, 1.0, 90.0, 89.0, 88.99),
                                                                (AGREEMENT, 99.0, 100.0, 99.0, 98.99)])
def test_a_score_exactly_at_the_budget_meets_it(kind, limit, reference, at, below):
    goal = Goal(kind, limit, reference)
    assert goal.meets(at) and not goal.meets(below)


def test_agreement_goal_and_a_search_that_runs_out_of_trials():
    net = TableNetwork({"stem": 3.0, "layer1.0": 3.0, "layer2.0": 3.0}, 0.0, 1000, reference=100.0)
    met = search(list(net.harm), net.measure, Goal(AGREEMENT, 96.5, 100.0))
    assert met.met and len(met.chosen.kept) == 2
    short = search(list(net.harm), TableNetwork(net.harm, 0.0, 1000, 100.0).measure, Goal(AGREEMENT, 98.0, 100.0),
                   max_trials=3)
    assert not short.met and short.stop == "max-trials" and len(short.trials) == 3
    never = search(list(net.harm), TableNetwork(net.harm, 0.0, 1000, 100.0).measure, Goal(AGREEMENT, 99.9, 100.0))
    assert not never.met and never.stop == "exhausted" and len(never.chosen.kept) == 2


@pytest.mark.parametrize("kind, limit, needed", [(ACCURACY, 1.0, 200), (ACCURACY, 0.5, 400), (ACCURACY, 100, 2),
                                                 (AGREEMENT, 0.99, 200), (AGREEMENT, 0.5, 4)])
def test_images_needed_to_resolve_a_budget(kind, limit, needed):
    assert images_needed(kind, limit) == needed


HOSTILE = [math.nan, math.inf, -math.inf, 0, 0.0, -1, -1e-9, 100.0001, 1e308, True, "1", None]


@pytest.mark.parametrize("kind", [ACCURACY, AGREEMENT])
@pytest.mark.parametrize("value", HOSTILE + [1.0, 1])
def test_hostile_limits_are_refused_with_the_option_named(kind, value):
    if kind == ACCURACY and value in (1.0, 1) and not isinstance(value, bool):
        check_limit(kind, value)  # one point is a budget
        return
    with pytest.raises(ConfigError, match="--max-accuracy-drop" if kind == ACCURACY else "--min-agreement"):
        check_limit(kind, value)


def test_bad_search_arguments():
    net = TableNetwork({"stem": 1.0}, 0.0, 100)
    with pytest.raises(ConfigError, match="--max-trials"):
        search(["stem"], net.measure, Goal(ACCURACY, 1.0, 90.0), max_trials=0)
    with pytest.raises(ConfigError, match="no quantizable blocks"):
        search([], net.measure, Goal(ACCURACY, 1.0, 90.0))


def test_blocks_are_ranked_by_the_loss_they_add_then_by_points():
    # a alone loses 2 points and adds 0.1 loss; b loses 1 point and adds 0.5; c and d lose 1 point each, equal loss
    scores = {(): (80.0, 2.0), ("b", "c", "d"): (88.0, 0.2), ("a", "c", "d"): (89.0, 0.6), ("a", "b", "d"): (88.0, 0.3),
              ("a", "b", "c"): (89.0, 0.3), ("b",): (85.0, 1.0)}
    result = search(["a", "b", "c", "d"], lambda kept: scores[tuple(sorted(kept))], Goal(ACCURACY, 0.5, 90.0, 0.1),
                    max_trials=6)
    assert [(c.block, c.drop, round(c.loss_added, 6)) for c in result.costs] == [
        ("b", 1.0, 0.5), ("c", 2.0, 0.2), ("d", 1.0, 0.2), ("a", 2.0, 0.1)]
    equal = {(): (80.0, 2.0), ("y",): (89.0, 0.3), ("x",): (89.0, 0.3)}  # x and y cost the same: graph order
    tied = search(["x", "y"], lambda kept: equal[tuple(sorted(kept))], Goal(ACCURACY, 0.5, 90.0, 0.1), max_trials=3)
    assert [c.block for c in tied.costs] == ["x", "y"]
