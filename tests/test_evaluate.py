"""Evaluation-only jobs (runner/evaluate.py): what they cannot do fails at validation; they run on the tiny model."""

from __future__ import annotations

import json
from math import comb

import pytest

from runner import job
from runner.benchmarks.reasoning import ReasoningSuite
from runner.data.qa import PromptFormat
from runner.decoding.processors import triangular_wave
from runner.errors import ConfigError
from runner.evaluate import is_evaluation_only
from runner.job_kinds import validate
from runner.models import load_model
from tests.conftest import compose_cfg


def test_what_an_evaluation_only_job_cannot_do_fails_at_validation():
    assert is_evaluation_only(compose_cfg("method=none")) and is_evaluation_only(compose_cfg("~method"))
    with pytest.raises(ConfigError, match=r"`method`.*only evaluates.*method=none"):
        validate(compose_cfg("benchmark=math500"))  # the default method is npo
    with pytest.raises(ConfigError, match=r"`decoding`.*benchmark=tofu always generates greedily"):
        validate(compose_cfg("decoding=cyclicreflex"))
    with pytest.raises(ConfigError, match=r"`coreset`.*method=none"):
        validate(compose_cfg("method=none", "benchmark=math500", "coreset=random", "coreset.ratio=0.5"))
    validate(compose_cfg("method=none", "benchmark=gsm8k", "decoding=tip"))
    validate(compose_cfg("decoding=greedy"))  # the default TOFU job is untouched


def test_evaluation_only_on_a_benchmark_with_finetuned_models_fails_clearly(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"fine-tuned models \(target, retain\)"):
        job.run(tiny_cfg("method=none"), tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"


def test_evaluation_only_job_on_the_tiny_model(reasoning_tiny_cfg, tmp_path):
    cfg = reasoning_tiny_cfg(
        "decoding=cyclicreflex", "decoding.period=8", "decoding.amplitude=50", "decoding.do_sample=false"
    )
    result = job.run(cfg, tmp_path / "a", choices={"method": "none", "decoding": "cyclicreflex"})
    on_disk = json.loads((tmp_path / "a" / "results.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["training"] == {}
    assert set(on_disk["timings"]) == {
        "load_model",
        "build_benchmark",
        "evaluate",
    }  # no unlearning, no fine-tuned models
    metrics = on_disk["metrics"]["evaluated"]
    assert set(metrics) >= {"accuracy", "mean_length", "reflections_per_response", "reflection_rate"}
    per = on_disk["per_example"]["evaluated"]["gsm8k"]
    n, budget = cfg.benchmark.subset, cfg.benchmark.max_new_tokens
    assert per["problem"] == list(range(n)) and len(per["generation"]) == n
    assert all(0 < length <= budget for length in per["length"])
    assert per["thinking_length"] == per["length"]  # the tiny model has no end-of-thinking tag
    assert per["gold"][:2] == ["18", "3"]  # the shipped GSM8K test set's first answers
    assert metrics["accuracy"] == sum(per["correct"]) / n
    for counts, positions in zip(per["reflections"], per["reflection_positions"], strict=True):
        assert sum(counts.values()) == len(positions)
    # the wave reached the model at the right positions: with A = 50 on greedy decoding, every position where
    # the offset is at least A/2 holds a reflection token, and none where it is -A/2 or lower
    for positions, length in zip(per["reflection_positions"], per["length"], strict=True):
        for t in range(length):
            delta = triangular_wave(t, 50, 8)
            if delta >= 25:
                assert t in positions, (t, positions)
            if delta <= -25:
                assert t not in positions, (t, positions)
    assert metrics["reflection_rate_peak_quarter"] == 1.0 and metrics["reflection_rate_negative_half"] < 0.5
    # an identical job is recognised and reported, not recomputed
    again = job.run(cfg, tmp_path / "b", choices={"method": "none", "decoding": "cyclicreflex"})
    assert again["metrics"] == result["metrics"]
    assert json.loads((tmp_path / "b" / "results.json").read_text())["reused_from"].endswith("a/results.json")


def test_samples_per_problem_give_mean_accuracy_and_pass_at_k(reasoning_tiny_cfg, tmp_path, shared_cache):
    cfg = reasoning_tiny_cfg("decoding=sample", "decoding.n=4", "benchmark.subset=2", "benchmark.pass_k=[1,2,4,8]")
    result = job.run(cfg, tmp_path)
    per = result["per_example"]["evaluated"]["gsm8k"]
    assert per["problem"] == [0, 0, 0, 0, 1, 1, 1, 1] and per["sample"] == [0, 1, 2, 3] * 2
    assert (
        set(result["metrics"]["evaluated"]) >= {"pass@2", "pass@4"} and "pass@8" not in result["metrics"]["evaluated"]
    )
    # the aggregation by hand on known outcomes: problem 0 right once in 4, problem 1 twice
    _, tokenizer = load_model(cfg.model, shared_cache)
    suite = ReasoningSuite(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
    per = {
        "correct": [True, False, False, False, True, True, False, False],
        "length": [4] * 8,
        "thinking_length": [4] * 8,
        "closed_thinking": [False] * 8,
        "reflections": [{"a": 1, "e": 0}] * 8,
        "reflection_positions": [[0]] * 8,
    }
    agg = suite.aggregate(per, problems=2, n=4)
    assert agg["accuracy"] == pytest.approx(3 / 8)
    assert agg["pass@2"] == pytest.approx(((1 - comb(3, 2) / comb(4, 2)) + (1 - comb(2, 2) / comb(4, 2))) / 2)
    assert agg["pass@4"] == 1.0 and agg["reflection_rate"] == pytest.approx(0.25)


@pytest.mark.slow
def test_evaluation_only_job_on_smollm2_with_a_handful_of_problems(smollm2, shared_cache, tmp_path):
    cfg = compose_cfg(
        "method=none",
        "benchmark=math500",
        "decoding=cyclicreflex",
        "benchmark.subset=3",
        "benchmark.max_new_tokens=24",
        "precision=fp32",
        f"paths.cache_dir={shared_cache}",
    )
    result = job.run(cfg, tmp_path)
    assert result["status"] == "completed"
    suite = result["evaluation"]["evaluated"]["math500"]
    words = suite["reflection_token_ids"]
    assert set(words) == {"wait", "Wait", "but", "But", "Alternatively"} and all(len(v) == 2 for v in words.values())
    per = result["per_example"]["evaluated"]["math500"]
    assert len(per["generation"]) == 3 and all(0 < n <= 24 for n in per["length"])
    assert per["gold"][0] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert suite["generation"]["tokens"] == sum(per["length"]) and suite["generation"]["tokens_per_s"] > 0
