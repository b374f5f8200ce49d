"""Hand-computed checks of the NPO / GradDiff losses and the answer-token NLL helpers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from runner.methods.graddiff import kl_to_reference
from runner.methods.npo import npo_forget_loss
from runner.scoring import mean_nll, sequence_logprob, token_nll
from tests.conftest import random_llama

IGNORE = -100


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --- NPO ------------------------------------------------------------------


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


# --- KL to reference -------------------------------------------------------


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


# --- answer-token NLL on a tiny Llama ---------------------------------------


@pytest.fixture(scope="module")
def tiny_llama():
    model = random_llama(vocab_size=11, num_hidden_layers=1).eval()
    return model


@pytest.fixture
def batch():
    # row 0: prompt [1, 2], answer [3, 4, 5, 6]
    # row 1: prompt [1, 7], answer [8, 9], right-padded with two pad tokens (id 0)
    return {
        "input_ids": torch.tensor([[1, 2, 3, 4, 5, 6], [1, 7, 8, 9, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]),
        "labels": torch.tensor([[IGNORE, IGNORE, 3, 4, 5, 6], [IGNORE, IGNORE, 8, 9, IGNORE, IGNORE]]),
    }


def reference_nll(model, batch) -> torch.Tensor:
    """(B, T-1) NLL from the full logits: logits[:, t] predicts token t+1; 0 where the label is ignored."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = F.log_softmax(logits.float(), dim=-1)
    labels = batch["labels"]
    b, t = labels.shape
    out = torch.zeros(b, t - 1)
    for i in range(b):
        for j in range(1, t):
            tok = int(labels[i, j])
            if tok != IGNORE:
                out[i, j - 1] = -logp[i, j - 1, tok]
    return out


def test_token_nll_matches_full_forward(tiny_llama, batch):
    with torch.no_grad():
        nll, mask = token_nll(tiny_llama, batch)
    expected_mask = torch.tensor([[False, True, True, True, True], [False, True, True, False, False]])
    assert mask.tolist() == expected_mask.tolist()
    assert nll.shape == (2, 5)
    torch.testing.assert_close(nll, reference_nll(tiny_llama, batch), atol=1e-5, rtol=1e-5)
    # prompt and padding positions carry exactly zero
    assert (nll[~mask] == 0).all()
    assert (nll[mask] > 0).all()


def test_token_nll_unwraps_module_attribute(tiny_llama, batch):
    with torch.no_grad():
        direct, _ = token_nll(tiny_llama, batch)
        wrapped, _ = token_nll(SimpleNamespace(module=tiny_llama), batch)
    torch.testing.assert_close(wrapped, direct)


def test_padding_does_not_change_the_padded_row(tiny_llama, batch):
    alone = {
        "input_ids": torch.tensor([[1, 7, 8, 9]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1]]),
        "labels": torch.tensor([[IGNORE, IGNORE, 8, 9]]),
    }
    with torch.no_grad():
        nll_batch, _ = token_nll(tiny_llama, batch)
        nll_alone, _ = token_nll(tiny_llama, alone)
    torch.testing.assert_close(nll_batch[1, :3], nll_alone[0], atol=1e-5, rtol=1e-5)


def test_sequence_logprob_and_mean_nll(tiny_llama, batch):
    ref = reference_nll(tiny_llama, batch)
    with torch.no_grad():
        logp, lengths = sequence_logprob(tiny_llama, batch)
        mean = mean_nll(tiny_llama, batch)
    assert lengths.tolist() == [4, 2]
    # log pi(y|x) = -(sum of the answer-token NLLs) of each row
    expected_logp = [-(ref[0, 1] + ref[0, 2] + ref[0, 3] + ref[0, 4]).item(), -(ref[1, 1] + ref[1, 2]).item()]
    assert logp.tolist() == pytest.approx(expected_logp, rel=1e-5)
    # batch mean over the 6 scored tokens, not the mean of the two per-row means
    assert mean.item() == pytest.approx(ref.sum().item() / 6, rel=1e-5)
    assert mean.item() != pytest.approx((ref[0].sum().item() / 4 + ref[1].sum().item() / 2) / 2, rel=1e-5)


def test_mean_nll_has_gradient(tiny_llama, batch):
    tiny_llama.zero_grad()
    mean_nll(tiny_llama, batch).backward()
    grad = tiny_llama.get_output_embeddings().weight.grad
    assert grad is not None and grad.abs().sum() > 0
    tiny_llama.zero_grad()
