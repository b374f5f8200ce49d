"""Hand-computed checks of the MCQ (WMDP / MMLU) and MUSE metrics, and of the batched forward passes behind them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from runner.benchmarks import mcq
from runner.benchmarks.muse import token_logprobs
from runner.metrics import mcq as mcq_metrics
from runner.metrics import muse as M
from tests.conftest import random_llama

# ---- MCQ prompt and accuracy -------------------------------------------------------------------


def test_prompt_is_lm_eval_layout():
    got = mcq.mcq_prompt("  What is 2+2? \n", ["3", "4", "5", "22"], mcq.subject_topic("elementary_mathematics"))
    assert got == (
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
        "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:"
    )


def test_accuracy_from_fixed_logprobs():
    logp = np.log(
        np.array(
            [
                [0.7, 0.1, 0.1, 0.1],  # A
                [0.1, 0.2, 0.6, 0.1],  # C
                [0.25, 0.25, 0.25, 0.25],  # tie: the first (A), as numpy / lm-eval
                [0.1, 0.1, 0.1, 0.7],  # D
                [0.1, 0.5, 0.3, 0.1],  # B
            ]
        )
    )
    preds = mcq_metrics.predictions(logp)
    assert preds.tolist() == [0, 2, 0, 3, 1]
    answers = [0, 1, 0, 3, 2]  # right, wrong, right, right, wrong
    assert mcq_metrics.accuracy(preds, answers) == pytest.approx(3 / 5)
    groups = ["bio", "bio", "cs", "cs", "cs"]
    assert mcq_metrics.grouped_accuracy(preds, answers, groups) == {
        "bio": pytest.approx(1 / 2),
        "cs": pytest.approx(2 / 3),
    }


# ---- the one-forward-per-question scorer ---------------------------------------------------------


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


# ---- MUSE ----------------------------------------------------------------------------------------


def test_rouge_l_f1_hand_computed():
    # LCS("the cat sat on the mat", "the cat lay on the mat") = 5 of 6 tokens each: P = R = F1 = 5/6
    # LCS("a b c", "a x c d") = 2: P = 2/3, R = 2/4, F1 = 2PR/(P+R) = 4/7
    got = M.rouge_l_f1(
        ["the cat sat on the mat", "a b c", "nothing shared"], ["the cat lay on the mat", "a x c d", "at all"]
    )
    assert got == pytest.approx([5 / 6, 4 / 7, 0.0])


def test_rouge_l_f1_does_not_stem():
    # MUSE's scorer has no stemmer: "running" and "runs" do not match
    assert M.rouge_l_f1(["dogs running"], ["dog runs"]) == [0.0]


def test_min_k_score_hand_computed():
    lp = [-1.0, -5.0, -2.0, -4.0, -3.0]
    assert M.min_k_score(lp, 0.4) == pytest.approx(4.5)  # int(5*0.4)=2 lowest: -5, -4
    assert M.min_k_score(lp, 1.0) == pytest.approx(3.0)  # all: mean 3
    assert M.min_k_score(lp, 0.1) == pytest.approx(5.0)  # int(0.5)=0 -> at least one token
    assert math.isnan(M.min_k_score([], 0.4))


def test_auc_hand_computed():
    assert M.auc([1, 2], [3, 4]) == 0.0  # forget always lower loss: memorised
    assert M.auc([3, 4], [1, 2]) == 1.0
    assert M.auc([1, 3], [2, 4]) == pytest.approx(1 / 4)  # only 3 > 2 of the four pairs
    assert M.auc([2], [2]) == 0.5  # a tie counts half
    assert M.auc([1, 2, 2], [2, 0]) == pytest.approx((0 + 1 + 0.5 + 1 + 0.5 + 1) / 6)


def test_auc_with_ties_across_and_within_the_sets():
    # forget (0.5, 1, 1, 3) vs holdout (1, 1, 2): the 12 pairs, a tie counting half
    #   0.5: loses to all three          -> 0
    #   1:   ties 1 and 1, loses to 2    -> 0.5 + 0.5 + 0  (twice: 1 each)
    #   3:   beats all three             -> 3
    # (0 + 1 + 1 + 3) / 12 = 5/12
    assert M.auc([0.5, 1, 1, 3], [1, 1, 2]) == pytest.approx(5 / 12, abs=1e-15)
    assert math.isnan(M.auc([], [1.0])) and math.isnan(M.auc([1.0], []))


def test_privleak_formula():
    assert M.privleak(0.25, 0.5) == pytest.approx(-50.0)
    assert M.privleak(0.6, 0.4) == pytest.approx(50.0)
    assert M.privleak(0.4772, 0.4772) == 0.0
    assert math.isnan(M.privleak(0.3, 0.0))


def test_token_logprobs_match_a_plain_forward(llama):
    rng = np.random.default_rng(3)
    seqs = [rng.integers(1, 60, size=int(n)).tolist() for n in (5, 12, 8)]
    encoded = [{"input_ids": s, "labels": list(s)} for s in seqs]
    got = token_logprobs(llama, encoded, pad_id=0, batch_size=2, precision="fp32", desc="test")
    for s, lp in zip(seqs, got, strict=True):
        with torch.no_grad():
            logp = torch.log_softmax(llama(input_ids=torch.tensor([s])).logits[0], dim=-1)
        want = [logp[i, s[i + 1]].item() for i in range(len(s) - 1)]
        np.testing.assert_allclose(lp, want, atol=1e-5)
