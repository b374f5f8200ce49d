"""Generation with a decoding strategy (runner/decoding/generate.py) on the tiny model."""

from __future__ import annotations

from transformers import LogitsProcessor

from runner.decoding.base import DecodingContext
from runner.decoding.generate import generate
from runner.decoding.strategies import BudgetForcingDecoding
from runner.models import load_model


class _Steer(LogitsProcessor):
    """Test stand-in for a model's will: row r 'wants' to close its thinking exactly at the steps in
    ``at[r]`` (the tag on top) and never otherwise; EOS is blocked so every row runs the whole budget."""

    def __init__(self, end: int, blocked: list[int], at: list[set[int]]):
        self.end, self.blocked, self.at, self.start = end, blocked, at, None

    def __call__(self, input_ids, scores):
        self.start = self.start if self.start is not None else input_ids.shape[1]
        t = input_ids.shape[1] - self.start
        scores = scores.clone()
        scores[:, self.blocked] = float("-inf")
        for row, steps in enumerate(self.at):
            scores[row, self.end] = 1e4 if t in steps else float("-inf")
        return scores


def test_budget_forcing_inserts_wait_and_forces_the_end_on_a_tiny_model(reasoning_tiny_cfg, shared_cache):
    cfg = reasoning_tiny_cfg()
    model, tokenizer = load_model(cfg.model, shared_cache)
    tokenizer.add_special_tokens({"additional_special_tokens": ["</think>"]})
    model.resize_token_embeddings(len(tokenizer))
    end = tokenizer.convert_tokens_to_ids("</think>")
    wait = tokenizer.encode("Wait", add_special_tokens=False)
    assert len(wait) == 3  # W + a + it: the insertion is forced token by token

    class Steered(BudgetForcingDecoding):
        def processors(self, ctx):
            steer = _Steer(end, [tokenizer.eos_token_id, tokenizer.pad_token_id], [{1, 9}, set()])
            return [steer, *super().processors(ctx)]

    s1 = Steered(min_thinking=6, max_thinking=12, max_waits=1, do_sample=False)
    prompt = tokenizer("Question: 2+2?\nAnswer:")["input_ids"]
    run = generate(model, tokenizer, [prompt, prompt], s1, DecodingContext(tokenizer, "</think>"), 16, 2, "fp32")
    first, second = (samples[0].ids for samples in run.outputs)
    # row 0 tries to stop at t=1 (below the minimum of 6): "Wait" goes in instead; at t=9 it may stop
    assert first[1:4] == wait and first[9] == end and end not in first[:9]
    # row 1 never tries: thinking is forced to end at the maximum of 12 tokens
    assert second[12] == end and end not in second[:12] and second[1:4] != wait


def test_greedy_ids_equal_model_generate_while_dropping_ended_rows():
    """The answer loop drops a row the step it ends; its tokens must be model.generate's, row by row."""
    import collections
    from types import SimpleNamespace

    import torch

    from runner.data.qa import left_padded
    from runner.decoding.generate import greedy_ids
    from tests.conftest import random_llama

    model = random_llama(vocab_size=40, max_position_embeddings=64, pad_token_id=0).eval()
    prompts = [[5, 9, 3], [7, 7, 7, 7, 2, 11], [13], [4, 8, 15, 16, 23, 22, 1], [30, 31]]
    ids, mask = left_padded(prompts, 0, "cpu")

    def reference(eos: int | None) -> list[list[int]]:
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=eos
            )
        rows = out[:, ids.shape[1] :].tolist()
        return [row[: row.index(eos)] if eos in row else row for row in rows]

    # an end token that the rows reach at different steps, so rows leave the batch one by one
    free = reference(None)
    first_seen = collections.Counter(t for row in free for t in set(row[1:]))
    eos = next(t for t, _ in first_seen.most_common() if len({row.index(t) for row in free if t in row}) > 1)
    want = reference(eos)
    assert len({len(r) for r in want}) > 1  # rows of different lengths: some leave early
    tokenizer = SimpleNamespace(eos_token_id=eos, pad_token_id=0)
    for batch_size in (5, 2):  # one batch, and batches whose order follows prompt length
        assert greedy_ids(model, tokenizer, prompts, 12, batch_size, "fp32", "test") == want
