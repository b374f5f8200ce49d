"""Membership, PrivLeak and memorisation metrics (runner/metrics/privacy.py) against hand-computed values."""

from __future__ import annotations

import math

import pytest

from runner.metrics import privacy as P


def test_loss_and_zlib_hand_computed():
    assert P.loss_score([-1.0, -2.0, -3.0]) == pytest.approx(2.0)
    # zlib.compress(b"Paris") is 13 bytes: 2 header + 7 deflate + 4 checksum
    assert P.zlib_score([-1.0, -2.0, -3.0], "Paris") == pytest.approx(2.0 / 13)


def test_min_k_hand_computed():
    lp = [-1.0, -5.0, -2.0, -4.0, -3.0]
    assert P.min_k_score(lp) == pytest.approx(4.5)  # int(5 * 0.4) = 2 lowest: -5, -4
    assert P.min_k_score(lp, 0.1) == pytest.approx(5.0)  # int(0.5) = 0 -> at least one token


def test_min_k_plus_plus_hand_computed():
    # z = (log p - mu) / sigma: (-1 + 1.5) / 0.5 = 1, (-2 + 1) / 2 = -0.5; the lowest one (int(0.8) -> 1): 0.5
    assert P.min_k_plus_plus_score([-1.0, -2.0], [-1.5, -1.0], [0.25, 4.0]) == pytest.approx(0.5)
    # a one-hot position (variance 0) is clamped to 1e-6: sigma 1e-3, z = 0.001 / 0.001 = 1
    assert P.min_k_plus_plus_score([-1.0], [-1.001], [0.0]) == pytest.approx(-1.0)


def test_gradnorm_and_reference_hand_computed():
    assert P.gradnorm_score([1.0, 2.0, 3.0]) == pytest.approx(-2.0)
    assert P.reference_score(2.5, 1.0) == pytest.approx(1.5)


def test_mia_auc_labels_forget_zero_and_counts_ties_half():
    assert P.mia_auc([1, 2], [3, 4]) == 1.0  # forget rows have the lower loss: memorised
    assert P.mia_auc([3, 4], [1, 2]) == 0.0
    assert P.mia_auc([2], [2]) == 0.5
    # holdout (1, 1, 2) above forget (0.5, 1, 1, 3): each 1 beats 0.5 and ties the two 1s (2 each), 2 beats three
    assert P.mia_auc([0.5, 1, 1, 3], [1, 1, 2]) == pytest.approx(7 / 12)
    assert math.isnan(P.mia_auc([], [1.0]))


def test_privleak_hand_computed():
    assert P.privleak(0.9, 0.5) == pytest.approx(-80.0)  # (0.1 - 0.5) / 0.5
    assert P.privleak(0.25, 0.5) == pytest.approx(50.0)  # unlearned past a model that never saw the data
    assert P.privleak(0.62, 0.62) == 0.0
    assert math.isnan(P.privleak(0.9, 1.0))


def test_exact_memorization_hand_computed():
    assert P.exact_memorization([True, False, True, True]) == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("hits", "value", "strict"),
    [
        ([1, 1, 1], 1.0, 1.0),  # whole answer predicted
        ([0, 1, 1], 2 / 3, 2 / 3),  # suffix from k = 1
        ([1, 0, 1], 1 / 3, 1 / 3),  # only the last token: k = 2
        ([1, 1, 0], 1 / 3, 0.0),  # the last token wrong: no suffix; open-unlearning still gives 1/|a|
        ([0, 0, 0, 0], 1 / 4, 0.0),  # all wrong
    ],
)
def test_extraction_strength_hand_computed(hits, value, strict):
    assert P.extraction_strength(hits) == pytest.approx(value)
    assert P.extraction_strength(hits, strict=True) == pytest.approx(strict)


@pytest.mark.parametrize(
    "metric",
    [
        lambda: P.loss_score([]),
        lambda: P.min_k_score([]),
        lambda: P.min_k_plus_plus_score([], [], []),
        lambda: P.exact_memorization([]),
        lambda: P.extraction_strength([]),
    ],
)
def test_a_zero_token_row_is_refused(metric):
    with pytest.raises(ValueError, match="no answer token"):
        metric()
