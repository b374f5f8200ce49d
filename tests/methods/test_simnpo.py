"""SimNPO (runner/methods/simnpo.py): the forget loss against its formula, length normalisation, its defaults."""

from __future__ import annotations

import math

import pytest
import torch

from runner.methods.simnpo import simnpo_forget_loss
from runner.scoring import sequence_logprob
from tests.conftest import TOY_FORGET_ROWS, compose_cfg, method_from_yaml, toy_batch, toy_data


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_simnpo_forget_loss_matches_formula():
    # two sequences: log pi = -3 over |y| = 2 tokens, log pi = -10 over |y| = 4 tokens
    logp, lengths, beta, gamma_m = [-3.0, -10.0], [2, 4], 2.5, 0.5
    # arguments of the sigmoid: -(2.5/2)(-3) - 0.5 = 3.25 and -(2.5/4)(-10) - 0.5 = 5.75
    expected = -(2 / beta) * (log_sigmoid(3.25) + log_sigmoid(5.75)) / 2
    assert expected == pytest.approx(0.4 * (math.log1p(math.exp(-3.25)) + math.log1p(math.exp(-5.75))))
    got = simnpo_forget_loss(f64(logp), torch.tensor(lengths), beta, gamma_m)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_simnpo_normalises_by_length():
    # the same per-token log-prob gives the same loss whatever the length; the sum alone would not
    short = simnpo_forget_loss(f64([-2.0]), torch.tensor([2]), 2.5, 0.0)
    long = simnpo_forget_loss(f64([-8.0]), torch.tensor([8]), 2.5, 0.0)
    assert short.item() == pytest.approx(long.item(), rel=1e-12)
    assert short.item() == pytest.approx(-(2 / 2.5) * log_sigmoid(2.5), rel=1e-12)


def test_simnpo_lengths_count_answer_tokens_with_eos(toy_llama):
    method = method_from_yaml("simnpo")
    data = toy_data(toy_llama)
    batch = toy_batch(data)
    with torch.no_grad():
        got = method.forget_term(toy_llama, batch)
        logp, _ = sequence_logprob(toy_llama, batch["forget"])
    lengths = [len(TOY_FORGET_ROWS[i]["answer"][:6]) + 1 for i in (3, 0, 2)]  # answer characters + TOY_EOS
    assert lengths == [5, 7, 7]
    expected = simnpo_forget_loss(logp, torch.tensor(lengths), method.beta, method.gamma_m)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_yaml_defaults():
    assert dict(compose_cfg("method=simnpo").method) == {
        "_target_": "runner.methods.simnpo.SimNPO",
        "beta": 2.5,
        "gamma_m": 0.0,
        "gamma": 0.125,
        "alpha": 1.0,
    }
