"""Loss on named text sets (runner/benchmarks/text_loss.py): the task-arithmetic measurement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from runner import job
from runner.benchmarks.text_loss import TextLossBenchmark, set_loss
from runner.errors import ConfigError
from tests.conftest import build_offline, experiment_cfg


def test_set_loss_is_token_weighted():
    # two texts: 3 tokens of log-prob -1 and 1 token of log-prob -5 -> per-text 1 and 5, set (3 + 5) / 4 = 2
    total, per_text = set_loss([np.array([-1.0, -1.0, -1.0]), np.array([-5.0])])
    assert per_text == [1.0, 5.0]
    assert total == pytest.approx(2.0)


def test_sets_are_read_and_scored_like_a_plain_forward_pass(tiny_tokenizer, shared_cache):
    from runner.models import load_model
    from tests.conftest import compose_cfg

    bench = build_offline(TextLossBenchmark, tiny_tokenizer, shared_cache, "task_arithmetic_smoke_tiny")
    assert [len(bench.texts[k]) for k in ("forget", "aligned", "irrelevant")] == [8, 8, 8]
    # the aligned set holds the forget answers' paraphrases: other words, not the same strings
    assert not set(bench.texts["forget"]) & set(bench.texts["aligned"])
    assert bench.forget_rows == [{"text": t} for t in bench.texts["forget"]]
    model = load_model(compose_cfg("model=tiny").model, shared_cache)[0]
    evaluation = bench.evaluate(model, experiment_cfg("task_arithmetic_smoke_tiny", shared_cache).eval, "fp32")
    # by hand: one text, its own forward pass, mean NLL of tokens 1.. given their prefix
    ids = torch.tensor([tiny_tokenizer(bench.texts["irrelevant"][0])["input_ids"][:64]])
    with torch.no_grad():
        logp = model(ids).logits[0, :-1].log_softmax(-1)
    by_hand = -logp.gather(1, ids[0, 1:, None]).mean().item()
    assert evaluation["per_example"]["irrelevant"]["nll"][0] == pytest.approx(by_hand, rel=1e-5)
    suite = evaluation["suites"]["forget"]
    assert suite["perplexity"] == pytest.approx(math.exp(suite["nll"]))


def test_bad_set_options_name_the_key(tiny_tokenizer, shared_cache):
    with pytest.raises(ConfigError, match=r"benchmark\.sets\.aligned\.field"):
        build_offline(
            TextLossBenchmark,
            tiny_tokenizer,
            shared_cache,
            "task_arithmetic_smoke_tiny",
            "benchmark.sets.aligned.field=nope",
        )
    with pytest.raises(ConfigError, match=r"benchmark\.unlearn_set"):
        build_offline(
            TextLossBenchmark, tiny_tokenizer, shared_cache, "task_arithmetic_smoke_tiny", "benchmark.unlearn_set=other"
        )


def test_task_negation_raises_the_forget_loss(shared_cache, tmp_path):
    """The negated text's loss rises above the start's, more at a larger lambda, and more than unrelated text's."""
    losses, irrelevant = {}, {}
    for lam in (0.5, 2.0):
        cfg = experiment_cfg("task_arithmetic_smoke_tiny", shared_cache, f"method.lam={lam}")
        result = job.run(cfg, tmp_path / f"lam{lam}")
        assert result["status"] == "completed"
        metrics = result["metrics"]
        losses[lam] = metrics["unlearned"]["forget_nll"]
        irrelevant[lam] = metrics["unlearned"]["irrelevant_nll"] - metrics["target"]["irrelevant_nll"]
        start = metrics["target"]["forget_nll"]
    assert start < losses[0.5] < losses[2.0]
    assert abs(irrelevant[2.0]) < losses[2.0] - start
