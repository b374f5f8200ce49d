"""BLUR's combined update and ILU's invariance penalty against their formulas."""

from __future__ import annotations

import pytest
import torch

from runner.methods.base import ForgetRetainMethod
from runner.methods.blur import BLUR, combine
from runner.methods.ilu import ILU, invariance_penalty

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


def test_whole_gradient_methods_refuse_multi_process_runs(tmp_path):
    """Under a 2-rank process group BLUR and ILU stop at start-up instead of mixing gradient shards."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import os, sys, torch.distributed as dist
        from runner.errors import ConfigError
        from runner.methods.blur import BLUR
        from runner.methods.ilu import ILU
        dist.init_process_group("gloo")
        node = {"_target_": "runner.methods.npo.NPO"}
        for method in (BLUR(base=node), ILU(base=node)):
            try:
                method.prepare(None)
            except ConfigError as exc:
                assert "`distributed`" in str(exc), exc
            else:
                sys.exit(f"{type(method).__name__} did not refuse")
        dist.destroy_process_group()
        """
    )
    path = tmp_path / "probe.py"
    path.write_text(script)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29631", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
