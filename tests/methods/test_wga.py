"""WGA (runner/methods/wga.py): the loss and its detached weights, its defaults."""

from __future__ import annotations

import math

import pytest
import torch

from runner.methods.wga import wga_forget_loss, wga_weights
from tests.conftest import compose_cfg


def f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_wga_loss_and_detached_weights(beta):
    probs = [0.5, 0.25, 0.8]
    logp = f64([math.log(p) for p in probs]).requires_grad_()
    weights = [p**beta for p in probs]
    expected = sum(w * math.log(p) for w, p in zip(weights, probs, strict=True)) / 3
    assert wga_weights(logp, beta).tolist() == pytest.approx(weights, rel=1e-12)
    loss = wga_forget_loss(logp, beta)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    # the weights carry no gradient: d loss / d log p_t = w_t / N, not w_t (1 + beta log p_t) / N
    assert logp.grad.tolist() == pytest.approx([w / 3 for w in weights], rel=1e-12)


def test_yaml_defaults():
    assert dict(compose_cfg("method=wga").method) == {"_target_": "runner.methods.wga.WGA", "beta": 1.0, "alpha": 1.0}
