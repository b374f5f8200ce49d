"""UNDIAL (runner/methods/undial.py): the target distribution and loss by hand, its defaults."""

from __future__ import annotations

import math

import pytest
import torch

from runner.methods.undial import undial_loss, undial_target_logits
from tests.conftest import compose_cfg, method_from_yaml, toy_batch, toy_data


def f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_undial_target_distribution_by_hand():
    # reference logits [1, 2, 0] on a 3-token vocabulary, gold token 1, beta 10 -> [1, -8, 0]
    ref = f64([[1.0, 2.0, 0.0]])
    shifted = undial_target_logits(ref, torch.tensor([1]), 10.0)
    assert shifted.tolist() == [[1.0, -8.0, 0.0]]
    z = math.e + math.exp(-8) + 1
    target = [math.e / z, math.exp(-8) / z, 1 / z]
    # student uniform: KL(target || uniform) = sum_i t_i ln t_i + ln 3
    expected = sum(t * math.log(t) for t in target) + math.log(3)
    got = undial_loss(f64([[0.0, 0.0, 0.0]]), ref, torch.tensor([1]), 10.0)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_undial_loss_is_mean_over_tokens_and_zero_at_the_shifted_teacher():
    ref = f64([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]])
    targets = torch.tensor([1, 2])
    # the student already equals the shifted teacher (up to a per-row constant, which softmax ignores)
    student = f64([[1.0 + 4, -8.0 + 4, 0.0 + 4], [0.5, -1.0, 3.0 - 10]])
    assert undial_loss(student, ref, targets, 10.0).item() == pytest.approx(0.0, abs=1e-12)
    # each row on its own, then the mean of the two
    uniform = f64([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    rows = [undial_loss(uniform[i : i + 1], ref[i : i + 1], targets[i : i + 1], 10.0).item() for i in range(2)]
    assert undial_loss(uniform, ref, targets, 10.0).item() == pytest.approx(sum(rows) / 2, rel=1e-12)


def test_undial_loss_has_no_gradient_into_the_teacher():
    ref = f64([[1.0, 2.0, 0.0]]).requires_grad_()
    student = f64([[0.3, 0.1, -0.2]]).requires_grad_()
    undial_loss(student, ref, torch.tensor([0]), 10.0).backward()
    assert ref.grad is None
    assert student.grad.abs().sum() > 0


def test_undial_skips_the_retain_batch_when_alpha_is_zero(toy_llama):
    method = method_from_yaml("undial")
    data = toy_data(toy_llama)
    method.prepare(data)
    batch = toy_batch(data)
    del batch["retain"]
    loss, _ = method.loss(toy_llama, batch)
    assert torch.isfinite(loss)


def test_yaml_defaults():
    undial = compose_cfg("method=undial").method
    assert undial.beta == 10.0 and undial.alpha == 0.0
