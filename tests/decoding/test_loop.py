"""The shared decode loop (runner/decoding/loop.py, static_step.py): static vs dynamic cache, eager vs compiled,
rows leaving, sampling under a seed; all against ``model.generate`` on the tiny random Llama."""

from __future__ import annotations

import collections
from types import SimpleNamespace

import pytest
import torch

from runner.data.qa import left_padded
from runner.decoding import engine, static_step
from runner.decoding.base import DecodingContext
from runner.decoding.generate import generate, greedy_ids
from runner.decoding.loop import argmax, decode_batch
from runner.decoding.progress import TokenBar
from runner.decoding.static_step import batch_buckets, cache_length
from runner.decoding.strategies import CyclicReflex, Decoding
from tests.conftest import random_llama

PROMPTS = [[5, 9, 3], [7, 7, 7, 7, 2, 11], [13], [4, 8, 15, 16, 23, 22, 1], [30, 31]]
CAP = 12


@pytest.fixture(scope="module")
def model():
    # grouped-query attention (4 query heads over 2 key/value heads), as the default model has: the static
    # step's grouped attention runs
    return random_llama(
        vocab_size=40, max_position_embeddings=64, pad_token_id=0, num_attention_heads=4, num_key_value_heads=2
    ).eval()


@pytest.fixture
def compile_setting(shared_cache, monkeypatch):
    """Sets generation.compile for one test and puts the default back; inductor's kernels go to the session's
    shared cache (warm on a rerun, as in a job)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(shared_cache / "inductor"))

    def use(value):
        engine.configure({"compile": value}, shared_cache)

    yield use
    engine.configure({}, None)


def _reference(model, eos: int | None, prompts=PROMPTS, **kw) -> list[list[int]]:
    """model.generate's new tokens for each of ``prompts`` (one left-padded batch), each row cut at ``eos``."""
    ids, mask = left_padded(prompts, 0, "cpu")
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=CAP, pad_token_id=0, eos_token_id=eos, **kw
        )
    rows = out[:, ids.shape[1] :].tolist()
    return [row[: row.index(eos)] if eos in row else row for row in rows]


@pytest.fixture(scope="module")
def eos_and_want(model):
    """An end token the greedy rows reach at different steps (rows leave one by one), and model.generate's rows."""
    free = _reference(model, None, do_sample=False)
    first_seen = collections.Counter(t for row in free for t in set(row[1:]))
    eos = next(t for t, _ in first_seen.most_common() if len({row.index(t) for row in free if t in row}) > 1)
    want = _reference(model, eos, do_sample=False)
    assert len({len(r) for r in want}) > 1
    return eos, want


def test_batch_buckets_and_cache_length_by_hand():
    assert batch_buckets(40) == [40, 32, 16, 8, 4, 2, 1]
    assert batch_buckets(8) == [8, 4, 2, 1]
    assert batch_buckets(5) == [5, 4, 2, 1]
    assert batch_buckets(1) == [1]
    assert cache_length(10, 100) == 128  # 110 rounded up to the 64-token bucket
    assert cache_length(64, 0) == 64


def _eager_greedy(model, eos: int, static: bool, leave: bool) -> tuple[list, TokenBar]:
    """The eager loop's greedy tokens for PROMPTS (up to CAP new tokens), and its closed bar."""
    bar = TokenBar(len(PROMPTS), CAP, "test")
    with torch.inference_mode():
        got = decode_batch(
            model, PROMPTS, 0, CAP, argmax, {eos}, static=static, compile=False, leave=leave, bar=bar, precision="fp32"
        )
    bar.close()
    return got, bar


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("leave", [False, True])
def test_eager_loop_greedy_equals_model_generate(model, eos_and_want, static, leave):
    """Static and dynamic cache, rows leaving (through batch sizes 5 -> 4 -> 2 -> 1 on the static cache) or
    staying: the greedy tokens are model.generate's, row by row."""
    eos, want = eos_and_want
    got, bar = _eager_greedy(model, eos, static=static, leave=leave)
    assert got == want
    assert bar.tokens == sum(map(len, want)) and bar.finished == len(PROMPTS)
    assert bar.bar.n == len(PROMPTS) * CAP  # the token budget is used up exactly when the last row is done


@pytest.mark.parametrize("chunk_tokens", [10, 5])
def test_static_prompt_pass_in_chunks_gives_model_generates_tokens(model, eos_and_want, monkeypatch, chunk_tokens):
    """The static cache's prompt pass in chunks (5 rows: 2 positions per chunk, then 1; the 7-token batch takes
    4, then 7 passes), each attending over the cache positions written so far: model.generate's greedy tokens."""
    assert model.config._attn_implementation == "sdpa"  # the chunks run the runner's prompt attention
    monkeypatch.setattr(static_step, "PROMPT_CHUNK_TOKENS", chunk_tokens)
    eos, want = eos_and_want
    got, _ = _eager_greedy(model, eos, static=True, leave=True)
    assert got == want


@pytest.mark.slow
def test_compiled_static_step_gives_the_eager_loops_tokens(model, eos_and_want, compile_setting):
    """generation.compile=true: greedy ids (rows leaving) and sampled generations are token for token those of
    model.generate and of the eager loop; the call is recorded with its compile seconds. Batches of 2 rows (the
    prompts' cache lengths all fall in the 64-token bucket): two compiled shapes, (2, 64) and (1, 64), serve both."""
    eos, want = eos_and_want
    tokenizer = SimpleNamespace(eos_token_id=eos, pad_token_id=0, decode=lambda ids, **kw: " ".join(map(str, ids)))
    compile_setting(True)
    assert greedy_ids(model, tokenizer, PROMPTS, CAP, 2, "fp32", "compiled") == want
    call = engine.summary()["calls"][-1]
    assert call["compiled"] and call["why"] == "generation.compile=true" and call["compile_seconds"] > 0
    sample = Decoding(name="sample", do_sample=True, temperature=0.8, top_p=0.9, seed=3)
    compiled = generate(model, tokenizer, PROMPTS, sample, DecodingContext(tokenizer), CAP, 2, "fp32", eos_ids={eos})
    compile_setting(False)
    eager = generate(model, tokenizer, PROMPTS, sample, DecodingContext(tokenizer), CAP, 2, "fp32", eos_ids={eos})
    assert [[g.ids for g in s] for s in compiled.outputs] == [[g.ids for g in s] for s in eager.outputs]


def test_sampled_generation_equals_model_generate_under_the_seed(model, eos_and_want, compile_setting):
    """Rows stay in the batch and the sampler draws as model.generate's does: the same seed, the same samples
    (temperature and top-p; n=2 samples per prompt, as num_return_sequences)."""
    eos, _ = eos_and_want
    compile_setting(False)
    tokenizer = SimpleNamespace(eos_token_id=eos, pad_token_id=0, decode=lambda ids, **kw: "")
    sample = Decoding(name="sample", do_sample=True, temperature=0.8, top_p=0.9, n=2, seed=3)
    run = generate(model, tokenizer, PROMPTS, sample, DecodingContext(tokenizer), CAP, 10, "fp32", eos_ids={eos})
    order = sorted(range(len(PROMPTS)), key=lambda i: len(PROMPTS[i]))  # the runner's batch: prompts by length
    torch.manual_seed(3)
    rows = _reference(model, eos, [PROMPTS[i] for i in order], num_return_sequences=2, **sample.generate_kwargs())
    want = [None] * len(PROMPTS)
    for k, i in enumerate(order):
        want[i] = rows[2 * k : 2 * k + 2]
    got = [[g.ids for g in s] for s in run.outputs]
    assert got == want
    assert len({tuple(r) for s in got for r in s}) > 1  # really sampled, not one greedy row repeated


def test_cyclicreflex_processor_runs_in_the_loop_as_in_model_generate(model, eos_and_want, compile_setting):
    """A strategy's processor (CyclicReflex's wave on some 'reflection' ids) changes the tokens the same way in
    the runner's loop and in model.generate."""
    eos, _ = eos_and_want
    compile_setting(False)
    tokenizer = SimpleNamespace(eos_token_id=eos, pad_token_id=0, decode=lambda ids, **kw: "")

    class Reflex(CyclicReflex):
        def word_ids(self, tok):
            return {"w": [6, 12, 17]}

    strategy = Reflex(amplitude=8.0, period=6)
    ctx = DecodingContext(tokenizer)
    run = generate(model, tokenizer, PROMPTS, strategy, ctx, CAP, 5, "fp32", eos_ids={eos})
    want = _reference(model, eos, do_sample=False, logits_processor=strategy.processors(ctx))
    assert [s[0].ids for s in run.outputs] == want
    assert want != _reference(model, eos, do_sample=False)  # the wave changed something


def test_token_bar_counts_tokens_and_a_recent_rate():
    bar = TokenBar(rows=3, cap=10, desc="t", window=10.0)
    bar.step(3)
    bar.step(2, ended=1, unused=8)  # a row ended at its second step: 8 of its 10 tokens are not needed
    assert (bar.tokens, bar.finished, bar.bar.n) == (5, 1, 13)
    # counts at t=0 (0 tokens), t=8 (4), t=15 (10); 20 tokens at t=20: the window starts at t=8, 16 tokens / 12 s
    bar.tokens = 20
    bar.recent.clear()
    bar.recent.extend([(100.0, 0), (108.0, 4), (115.0, 10)])
    assert bar.rate(now=120.0) == pytest.approx(16 / 12)
    # a slowdown shows: from t=115 on 1 token in 10 s
    bar.tokens = 11
    bar.recent.clear()
    bar.recent.extend([(100.0, 0), (115.0, 10)])
    assert bar.rate(now=125.0) == pytest.approx(1 / 10)
    bar.close()
