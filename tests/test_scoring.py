"""Scoring (runner/scoring.py): answer-token NLL against a full forward, padding, shared-prompt scoring."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runner.data.qa import IGNORE
from runner.scoring import mean_nll, score_answer_sets, score_sequences, sequence_logprob, token_nll
from tests.conftest import random_llama


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


def test_shared_prompt_scoring_equals_scoring_each_sequence():
    model = random_llama(max_position_embeddings=64).eval()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 50, (n,), generator=g).tolist() for n in (5, 9, 3, 7)]
    lengths = ([4, 6, 1], [3], [8, 2, 5, 5], [1, 1])
    answers = [[torch.randint(3, 50, (k,), generator=g).tolist() for k in ks] for ks in lengths]
    # batch_size 5 splits the 10 answers over several passes, with prompts of different lengths in one pass
    got = np.concatenate(score_answer_sets(model, prompts, answers, 0, 5, "fp32", "shared"))
    flat = [
        {"input_ids": p + a, "labels": [IGNORE] * len(p) + a}
        for p, ans in zip(prompts, answers, strict=True)
        for a in ans
    ]
    want = score_sequences(model, flat, 0, 3, "fp32", "each")
    np.testing.assert_array_equal(got[:, 1], [k for ks in lengths for k in ks])
    np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=1e-5)
