"""BLUR (runner/methods/blur.py): the combined update against its formula, by hand, and through backward."""

from __future__ import annotations

import torch

from runner.methods.base import ForgetRetainMethod
from runner.methods.blur import BLUR, combine

NPO_NODE = {"_target_": "runner.methods.npo.NPO"}  # a base method config node, as Hydra composes it


def _flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


def test_blur_npo_update_matches_formula_and_is_orthogonal_after_removing_forget_step():
    g_f = [torch.tensor([1.0, 2.0]), torch.tensor([[2.0]])]
    g_r = [torch.tensor([3.0, -1.0]), torch.tensor([[4.0]])]
    gamma = 0.7
    # <g_r, g_f> = 3 - 2 + 8 = 9 ; ||g_f||^2 = 1 + 4 + 4 = 9 ; proj = 1
    expected = _flat(g_r) + (gamma - 1.0) * _flat(g_f)
    out = combine([t.clone() for t in g_f], [t.clone() for t in g_r], "npo", gamma, alpha=1.0)
    assert torch.allclose(_flat(out), expected)
    # the retain part that is left has no component along g_f
    assert torch.dot(_flat(out) - gamma * _flat(g_f), _flat(g_f)).abs() < 1e-6


def test_blur_rmu_update_matches_formula():
    g_f = [torch.tensor([1.0, 0.0, 1.0])]
    g_r = [torch.tensor([2.0, 3.0, 0.0])]
    alpha = 10.0
    proj = 2.0 / 2.0  # <g_f, g_r> / ||g_f||^2
    expected = g_f[0] + alpha * (g_r[0] - proj * g_f[0])
    out = combine([g_f[0].clone()], [g_r[0].clone()], "rmu", gamma=1.0, alpha=alpha)
    assert torch.allclose(out[0], expected)
    assert torch.dot(out[0] - g_f[0], g_f[0]).abs() < 1e-6


def test_blur_zero_forget_gradient_falls_back_to_retain_gradient():
    out = combine([torch.zeros(2)], [torch.tensor([1.0, 2.0])], "npo", gamma=1.0, alpha=1.0)
    assert torch.equal(out[0], torch.tensor([1.0, 2.0]))


def test_blur_backward_fills_grads_with_the_combined_direction():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False)

    class Base(ForgetRetainMethod):  # two quadratic losses with known gradients
        alpha = 1.0

        def forget_term(self, m, batch):
            return (m.weight * torch.tensor([[1.0, 2.0, 0.0]])).sum() ** 2

        def retain_term(self, m, batch):
            return (m.weight**2).sum()

    blur = BLUR(base=NPO_NODE, gamma=1.0)
    blur.base = Base()
    w = model.weight.detach().clone()
    a = torch.tensor([[1.0, 2.0, 0.0]])
    g_f = 2 * (w * a).sum() * a
    g_r = 2 * w
    proj = (g_r * g_f).sum() / (g_f * g_f).sum()
    blur.backward(model, {}, scale=0.5)
    assert torch.allclose(model.weight.grad, 0.5 * (g_r + (1.0 - proj) * g_f), atol=1e-6)
