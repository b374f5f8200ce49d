"""NPO (runner/methods/npo.py): the forget loss against its formula, at the reference, and its gradient."""

from __future__ import annotations

import math

import pytest
import torch

from runner.methods.npo import npo_forget_loss


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_npo_forget_loss_matches_formula():
    logp, logp_ref, beta = [-10.0, -20.0], [-12.0, -15.0], 0.1
    # -(2/beta) * mean log sigmoid(-beta * (logp - logp_ref)); the differences are [2, -5]
    expected = -(2 / beta) * (log_sigmoid(-0.1 * 2.0) + log_sigmoid(-0.1 * -5.0)) / 2
    # = 20 * (log(1 + e^0.2) + log(1 + e^-0.5)) / 2
    assert expected == pytest.approx(10 * (math.log1p(math.exp(0.2)) + math.log1p(math.exp(-0.5))))
    got = npo_forget_loss(torch.tensor(logp, dtype=torch.float64), torch.tensor(logp_ref, dtype=torch.float64), beta)
    assert got.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_npo_forget_loss_at_reference_is_2_ln2_over_beta(beta):
    logp = torch.tensor([-3.0, -17.5, -40.0], dtype=torch.float64)
    got = npo_forget_loss(logp, logp.clone(), beta)
    assert got.item() == pytest.approx(2 / beta * math.log(2), rel=1e-12)


def test_npo_forget_loss_gradient():
    # d/d logp_i of -(2/beta) * (1/N) * sum log sigmoid(-beta d_i) = (2/N) * sigmoid(beta d_i)
    logp = torch.tensor([-10.0, -20.0], dtype=torch.float64, requires_grad=True)
    logp_ref = torch.tensor([-12.0, -15.0], dtype=torch.float64)
    npo_forget_loss(logp, logp_ref, 0.1).backward()
    expected = [2 / 2 * sigmoid(0.1 * 2.0), 2 / 2 * sigmoid(0.1 * -5.0)]
    assert logp.grad.tolist() == pytest.approx(expected, rel=1e-12)
