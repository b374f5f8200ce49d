"""MCQ forward passes (runner/benchmarks/mcq.py): the lm-eval prompt and tokenisation;
batched scores equal unpadded ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runner.benchmarks import mcq
from runner.metrics import mcq as mcq_metrics
from tests.conftest import random_llama


def test_prompt_is_lm_eval_layout():
    got = mcq.mcq_prompt("  What is 2+2? \n", ["3", "4", "5", "22"], mcq.subject_topic("elementary_mathematics"))
    assert got == (
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
        "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:"
    )


@pytest.fixture(scope="module")
def llama():
    return random_llama(vocab_size=60, max_position_embeddings=64).eval()


def _reference_logprobs(model, enc: mcq.EncodedMCQ) -> list[float]:
    """Each choice scored alone, unpadded: sum of log P(continuation tokens | context + earlier ones)."""
    out = []
    for cont in enc.continuations:
        ids = torch.tensor([enc.context + cont])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
        n = len(enc.context)
        out.append(sum(logp[n - 1 + j, t].item() for j, t in enumerate(cont)))
    return out


def _questions(rng, n, multi=False):
    qs = []
    for _ in range(n):
        ctx = rng.integers(3, 60, size=int(rng.integers(3, 20))).tolist()
        conts = [[int(t)] for t in rng.choice(np.arange(3, 60), size=4, replace=False)]
        if multi:
            conts = [c + [int(rng.integers(3, 60))] for c in conts]
        qs.append(mcq.EncodedMCQ(ctx, conts))
    return qs


@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batched_scores_equal_unpadded_scores(llama, padding, batch_size):
    qs = _questions(np.random.default_rng(0), 7)
    got = mcq.choice_logprobs(llama, qs, pad_id=0, batch_size=batch_size, precision="fp32", padding=padding)
    want = np.array([_reference_logprobs(llama, q) for q in qs])
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert (mcq_metrics.predictions(got) == mcq_metrics.predictions(want)).all()


def test_multi_token_continuations_take_the_sequence_path(llama):
    qs = _questions(np.random.default_rng(1), 4, multi=True) + _questions(np.random.default_rng(2), 3)
    assert [q.single_token for q in qs] == [False] * 4 + [True] * 3
    got = mcq.choice_logprobs(llama, qs, pad_id=0, batch_size=4, precision="fp32")
    want = np.array([_reference_logprobs(llama, q) for q in qs])
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_encode_mcq_splits_like_lm_eval():
    class CharTokenizer:  # one token per character: " A" is two tokens, so not the fast path
        def __call__(self, text):
            return {"input_ids": [ord(c) for c in text]}

    enc = mcq.encode_mcq(CharTokenizer(), "Q?\nAnswer:")
    assert enc.context == [ord(c) for c in "Q?\nAnswer:"]
    assert enc.continuations == [[32, ord(x)] for x in "ABCD"]
    assert not enc.single_token and not enc.merged
