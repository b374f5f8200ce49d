"""ILU (runner/methods/ilu.py): the invariance penalty by hand, its second-order gradient, its environments."""

from __future__ import annotations

import pytest
import torch

from runner.methods.ilu import ILU, invariance_penalty

NPO_NODE = {"_target_": "runner.methods.npo.NPO"}  # a base method config node, as Hydra composes it


def test_invariance_penalty_readings_by_hand():
    params = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])]
    grads = [torch.tensor([3.0, -1.0]), torch.tensor([0.5])]
    # elementwise: (1*3)^2 + (2*-1)^2 + (3*0.5)^2 = 9 + 4 + 2.25
    assert invariance_penalty(params, grads, "elementwise").item() == pytest.approx(15.25)
    # scalar: (3 - 2 + 1.5)^2
    assert invariance_penalty(params, grads, "scalar").item() == pytest.approx(6.25)


def test_penalty_gradient_is_second_order():
    """d/dtheta of ||theta * grad l(theta)||^2 for l = (theta.x - y)^2, checked against the closed form."""
    x, y = torch.tensor([0.5, -1.0], dtype=torch.float64), 0.3
    theta = torch.tensor([0.8, 0.2], dtype=torch.float64, requires_grad=True)
    loss = (theta @ x - y) ** 2
    (g,) = torch.autograd.grad(loss, [theta], create_graph=True)
    pen = invariance_penalty([theta], [g], "elementwise")
    (dpen,) = torch.autograd.grad(pen, [theta])
    r = (theta @ x - y).item()
    t = theta.detach()
    # pen = sum_j (t_j * 2 r x_j)^2 = 4 r^2 sum_j t_j^2 x_j^2
    # dpen/dt_k = 8 r^2 t_k x_k^2 + 4 sum_j t_j^2 x_j^2 * 2 r x_k
    s = (t**2 * x**2).sum()
    expected = 8 * r**2 * t * x**2 + 8 * r * s * x
    assert torch.allclose(dpen, expected)


def test_ilu_rejects_unknown_reading_and_environment():
    from runner.errors import ConfigError

    with pytest.raises(ConfigError, match="method.reading"):
        ILU(base=NPO_NODE, reading="diagonal")
    with pytest.raises(ConfigError, match="method.environments"):
        from runner.methods.ilu import load_environment

        load_environment("mnist", 4, 0)


def test_gsm8k_environment_rows_are_real_and_seeded():
    from runner.methods.ilu import load_environment

    a, b = load_environment("gsm8k", 5, 1), load_environment("gsm8k", 5, 1)
    assert a == b and len(a) == 5
    assert all("####" in r["answer"] for r in a)
    assert load_environment("gsm8k", 5, 2) != a
