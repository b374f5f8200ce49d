"""SatImp (runner/methods/satimp.py): the token weights and the loss by hand, the parts, its defaults."""

from __future__ import annotations

import math

import pytest
import torch

from runner.errors import ConfigError
from runner.methods.satimp import SatImp, satimp_forget_loss, satimp_weights
from runner.methods.wga import wga_forget_loss
from runner.scoring import mean_nll, token_nll
from tests.conftest import compose_cfg, method_from_yaml, toy_batch, toy_data

PROBS = [0.5, 0.25, 0.8]


def logp_of(probs) -> torch.Tensor:
    return torch.tensor([math.log(p) for p in probs], dtype=torch.float64, requires_grad=True)


def test_weights_loss_and_detached_gradient():
    logp = logp_of(PROBS)
    # beta1 2, beta2 1: w = p^2 (1 - p)
    weights = [0.25 * 0.5, 0.0625 * 0.75, 0.64 * 0.2]
    assert weights == pytest.approx([0.125, 0.046875, 0.128])
    assert satimp_weights(logp, 2.0, 1.0).tolist() == pytest.approx(weights, rel=1e-12)
    loss = satimp_forget_loss(logp, 2.0, 1.0)
    expected = sum(w * math.log(p) for w, p in zip(weights, PROBS, strict=True)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert logp.grad.tolist() == pytest.approx([w / 3 for w in weights], rel=1e-12)  # weights carry no gradient


def test_beta2_zero_is_wga():
    logp = logp_of(PROBS)
    assert satimp_forget_loss(logp, 1.5, 0.0).item() == pytest.approx(wga_forget_loss(logp, 1.5).item(), rel=1e-12)


def test_parts_are_gamma_forget_and_alpha_retain(toy_llama):
    data = toy_data(toy_llama)
    batch = toy_batch(data)
    method = SatImp(beta1=5.0, beta2=1.0, gamma=0.1, alpha=2.0)
    with torch.no_grad():
        (forget, f_terms), (retain, r_terms) = list(method.loss_parts(toy_llama, batch))
        nll, mask = token_nll(toy_llama, batch["forget"])
        p = torch.exp(-nll[mask].double())
        expected = (-(p**5) * (1 - p) * nll[mask].double()).mean()
        assert f_terms["satimp_forget"] == pytest.approx(expected.item(), rel=1e-5)
        assert forget.item() == pytest.approx(0.1 * expected.item(), rel=1e-5)
        assert retain.item() == pytest.approx(2.0 * mean_nll(toy_llama, batch["retain"]).item(), rel=1e-6)
    assert set(r_terms) == {"retain_nll"}


def test_yaml_defaults_and_option_check():
    assert dict(compose_cfg("method=satimp").method) == {
        "_target_": "runner.methods.satimp.SatImp",
        "beta1": 5.0,
        "beta2": 1.0,
        "gamma": 0.1,
        "alpha": 1.0,
        "retain_loss": "nll",
    }
    assert isinstance(method_from_yaml("satimp"), SatImp)
    with pytest.raises(ConfigError, match="method.beta2"):
        SatImp(beta2=-1.0)
    with pytest.raises(ConfigError, match="method.retain_loss"):
        SatImp(retain_loss="mse")
