"""TOFU evaluation: shared-prompt scoring, answer caps that fit every gold answer, rows with no answer left."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from runner import job
from runner.benchmarks.base import build_benchmark
from runner.benchmarks.muse import _cut
from runner.benchmarks.tofu import SUITES
from runner.data.qa import IGNORE, PromptFormat
from runner.errors import ConfigError
from runner.models import load_model
from runner.scoring import score_answer_sets, score_sequences
from tests.conftest import random_llama


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


@pytest.fixture(scope="module")
def tiny_tokenizer(shared_cache):
    from tests.conftest import compose_cfg

    cfg = compose_cfg("experiment=tofu_smoke_tiny", f"paths.cache_dir={shared_cache}")
    return load_model(cfg.model, shared_cache)[1], cfg


def test_auto_cap_fits_the_longest_gold_answer_of_each_suite(tiny_tokenizer):
    tokenizer, cfg = tiny_tokenizer
    bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
    for suite in SUITES:
        longest = max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in bench.suites[suite]["answer"])
        assert longest + 1 <= bench.max_new_tokens[suite] <= longest + 1 + max(4, longest // 10)


def test_a_row_with_no_answer_token_stops_the_job_before_training(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"benchmark.max_length.*row 0.*no answer token"):
        job.run(tiny_cfg("benchmark.max_length=8"), tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed" and "max_length" in record["error"]["message"]
    assert record["training"] == {}  # nothing was fine-tuned or unlearned


def test_knowmem_cuts_at_stop_strings_before_stripping():
    assert _cut(" Paris\n\nQuestion: next") == "Paris"
    assert _cut("\n\nParis") == ""  # MUSE: the answer ended at the blank line
    assert _cut("Paris Question: x") == "Paris"
