"""GradDiff (runner/methods/graddiff.py): the KL retain term by hand."""

from __future__ import annotations

import math

import pytest
import torch

from runner.methods.graddiff import kl_to_reference


def test_kl_to_reference_hand_values():
    # row 1: p_ref = [1/2, 1/4, 1/4], p = [1/4, 1/4, 1/2]
    #   KL = 1/2 ln 2 + 0 + 1/4 ln(1/2) = 1/4 ln 2
    # row 2: p_ref uniform over 3, p = [1/2, 1/4, 1/4] (logits shifted by 7: softmax must normalise)
    #   KL = ln(1/3) - 1/3 (ln 1/2 + 2 ln 1/4) = -ln 3 + 5/3 ln 2
    ref_logits = torch.tensor(
        [[math.log(0.5), math.log(0.25), math.log(0.25)], [0.0, 0.0, 0.0]],
        dtype=torch.float64,
    )
    logits = torch.tensor(
        [[math.log(0.25), math.log(0.25), math.log(0.5)], [math.log(0.5) + 7, math.log(0.25) + 7, math.log(0.25) + 7]],
        dtype=torch.float64,
    )
    row1 = 0.25 * math.log(2)
    row2 = -math.log(3) + 5 / 3 * math.log(2)
    assert kl_to_reference(ref_logits, logits).item() == pytest.approx((row1 + row2) / 2, rel=1e-12)


def test_kl_to_reference_matches_written_out_sum_and_direction():
    ref_logits = [[0.3, -1.2, 2.0], [1.0, 0.0, -0.5]]
    logits = [[1.5, 0.1, -0.7], [0.2, 0.9, 0.4]]

    def softmax(row):
        z = sum(math.exp(v) for v in row)
        return [math.exp(v) / z for v in row]

    def kl(p, q):
        return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))

    forward = sum(kl(softmax(r), softmax(c)) for r, c in zip(ref_logits, logits, strict=True)) / 2
    reverse = sum(kl(softmax(c), softmax(r)) for r, c in zip(ref_logits, logits, strict=True)) / 2
    got = kl_to_reference(torch.tensor(ref_logits, dtype=torch.float64), torch.tensor(logits, dtype=torch.float64))
    assert got.item() == pytest.approx(forward, rel=1e-12)
    assert abs(forward - reverse) > 1e-3  # the test can tell KL(p_ref || p) from KL(p || p_ref)


def test_kl_to_reference_zero_when_equal():
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert kl_to_reference(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-12)
