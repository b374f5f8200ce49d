"""Token statistics of the privacy metrics (runner/scoring.py): from the scoring pass, equal to a plain full
forward pass with every prompt token attended, and the pad-mask difference from open-unlearning pinned."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runner.data.qa import IGNORE
from runner.metrics.tofu import normalised_prob
from runner.scoring import head_token_stats, score_answer_sets, sequence_token_stats
from tests.conftest import random_llama

PAD = 0


@pytest.fixture(scope="module")
def model():
    return random_llama(max_position_embeddings=64).eval()


def plain_forward(model, prompt: list[int], answer: list[int], mask_pad: bool = False) -> dict[str, np.ndarray]:
    """One unpadded sequence through the whole model; ``mask_pad`` hides every pad-id token from attention,
    as open-unlearning's collator does (SmolLM2's pad token also closes the user turn of every prompt)."""
    ids = torch.tensor([prompt + answer])
    attention = (ids != PAD).long() if mask_pad else torch.ones_like(ids)
    with torch.no_grad():
        logp = F.log_softmax(model(input_ids=ids, attention_mask=attention).logits[0].float(), dim=-1)
    pos = torch.arange(len(prompt) - 1, len(prompt) + len(answer) - 1)
    rows, gold = logp[pos], torch.tensor(answer)
    p = rows.exp()
    mean = (p * rows).sum(-1)
    return {
        "logprob": rows.gather(1, gold[:, None])[:, 0].double().numpy(),
        "hit": (rows.argmax(-1) == gold).double().numpy(),
        "vocab_mean": mean.double().numpy(),
        "vocab_var": ((p * rows.square()).sum(-1) - mean.square()).double().numpy(),
    }


# a pad id (0) inside two prompts, as SmolLM2's <|im_end|> closes every user turn
PROMPTS = [[5, 9, PAD, 7], [4, 8, 11, 13, 2, PAD, 6], [3, 21]]
ANSWERS = [[[12, 14, 16], [30, 31]], [[17, 18, 19, 20, 22]], [[40], [41, 42, 43]]]


def test_gold_answer_stats_from_the_scoring_pass_equal_a_plain_forward(model):
    sums, stats = score_answer_sets(model, PROMPTS, ANSWERS, PAD, 3, "fp32", "shared", gold_stats=True)
    plain = score_answer_sets(model, PROMPTS, ANSWERS, PAD, 3, "fp32", "shared")
    for got, want in zip(sums, plain, strict=True):  # the statistics head leaves the sums as they were
        np.testing.assert_allclose(got, want, rtol=1e-5)
    for prompt, answers, got in zip(PROMPTS, ANSWERS, stats, strict=True):
        want = plain_forward(model, prompt, answers[0])
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def test_probability_rows_pinned_to_a_plain_forward_and_apart_from_a_pad_masked_one(model):
    sums = score_answer_sets(model, PROMPTS, ANSWERS, PAD, 8, "fp32", "shared")
    ours = normalised_prob([s[0, 0] / s[0, 1] for s in sums])
    plain = [
        normalised_prob([-plain_forward(model, p, a[0])["logprob"].mean()])[0]
        for p, a in zip(PROMPTS, ANSWERS, strict=True)
    ]
    masked = [
        normalised_prob([-plain_forward(model, p, a[0], mask_pad=True)["logprob"].mean()])[0]
        for p, a in zip(PROMPTS, ANSWERS, strict=True)
    ]
    np.testing.assert_allclose(ours, plain, rtol=1e-5)
    # hiding the pad-id prompt token changes the rows that have one, and only those
    assert ours[0] != pytest.approx(masked[0], rel=1e-3) and ours[1] != pytest.approx(masked[1], rel=1e-3)
    assert ours[2] == pytest.approx(masked[2], rel=1e-5)


def test_sequence_stats_cover_every_labelled_token_and_chunking_changes_nothing(model):
    enc = [
        {"input_ids": [1, 5, 6, 7, 8], "labels": [IGNORE, 5, 6, 7, 8]},
        {"input_ids": [1, 9, 10], "labels": [IGNORE, 9, 10]},
    ]
    stats = sequence_token_stats(model, enc, PAD, 2, "fp32", "stats")
    assert [len(s["logprob"]) for s in stats] == [4, 2]
    want = plain_forward(model, [1], [5, 6, 7, 8])
    np.testing.assert_allclose(stats[0]["logprob"], want["logprob"], rtol=1e-4)
    hidden = torch.randn(7, model.config.hidden_size)
    targets = torch.randint(0, model.config.vocab_size, (7,))
    head = model.get_output_embeddings()
    with torch.no_grad():
        torch.testing.assert_close(
            head_token_stats(head, hidden, targets, chunk=3), head_token_stats(head, hidden, targets)
        )
