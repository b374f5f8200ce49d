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
