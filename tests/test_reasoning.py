"""Reasoning benchmarks and evaluation-only jobs: data sources, prompts, the job end to end (tiny model,
SmolLM2 on a handful of problems), s1 on a tiny model, sweeps over decoding= and their report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from math import comb

import pytest
from transformers import LogitsProcessor

from runner import job
from runner.benchmarks.reasoning import ReasoningSuite, reasoning_prompt
from runner.config import validate
from runner.data.qa import PromptFormat
from runner.data.reasoning import PROJECT_DATA, load_problems
from runner.decoding.base import DecodingContext
from runner.decoding.generate import generate
from runner.decoding.processors import triangular_wave
from runner.decoding.strategies import BudgetForcingDecoding
from runner.errors import ConfigError
from runner.evaluate import is_evaluation_only
from runner.models import load_model
from tests.conftest import ROOT, compose_cfg

FIXTURES = ROOT / "tests" / "fixtures" / "hub"
SMOKE = "experiment=reasoning_smoke_tiny"


@pytest.fixture
def smoke_cfg(shared_cache):
    def make(*overrides: str):
        return compose_cfg(SMOKE, f"paths.cache_dir={shared_cache}", *overrides)

    return make


# ---------------------------------------------------------------- data


def _bench(name: str, *overrides: str):
    return compose_cfg("method=none", f"benchmark={name}", *overrides).benchmark


def test_shipped_sets_and_the_hub_layout_give_the_same_rows(tmp_path):
    math500 = load_problems(_bench("math500").data, "local")
    gsm8k = load_problems(_bench("gsm8k").data, "local")
    assert len(math500) == 500 and len(gsm8k) == 1319
    assert math500[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    # the same rows laid out as the hub's <repo>/<config>/<split>.jsonl read back through the directory source
    for name, rows in (("math500", "math500/test.jsonl"), ("gsm8k", "gsm8k/test.jsonl")):
        split = _bench(name).data.splits[0]
        target = tmp_path / split.repo / split.config / f"{split.split}.jsonl"
        target.parent.mkdir(parents=True)
        target.write_text("\n".join((PROJECT_DATA / rows).read_text().splitlines()[:5]) + "\n")
    assert load_problems(_bench("math500").data, str(tmp_path)) == math500[:5]
    assert load_problems(_bench("gsm8k").data, str(tmp_path)) == gsm8k[:5]


def test_aime_and_amc_load_from_a_hub_layout_directory():
    aime24 = load_problems(_bench("aime24").data, str(FIXTURES))
    assert aime24[0] == {"question": "Find the sum of the first $10$ positive integers.", "answer": "55"}
    aime25 = load_problems(_bench("aime25").data, str(FIXTURES))  # AIME2025-I then AIME2025-II
    assert [r["answer"] for r in aime25] == ["156", "323", "667", "156", "323"]
    amc23 = load_problems(_bench("amc23").data, str(FIXTURES))
    assert [r["answer"] for r in amc23] == ["49", "121", "169"]  # floats in the hub schema


def test_fetch_data_copies_the_reasoning_splits_and_the_runner_reads_the_parquet(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import fetch_data

    splits = fetch_data.splits_for("reasoning")
    assert [s.repo for s, _ in splits] == [
        "HuggingFaceH4/MATH-500",
        "openai/gsm8k",
        "HuggingFaceH4/aime_2024",
        "opencompass/AIME2025",
        "opencompass/AIME2025",
        "zwhe99/amc23",
    ]
    hub_only = [(s, schema) for s, schema in splits if s.repo not in ("HuggingFaceH4/MATH-500", "openai/gsm8k")]
    written = fetch_data.fetch(hub_only, tmp_path, source=str(FIXTURES))  # the fixtures stand in for the hub
    assert len(written) == 4 and all(p.suffix == ".parquet" for p in written)
    for name in ("aime24", "aime25", "amc23"):
        data = _bench(name).data
        assert load_problems(data, str(tmp_path)) == load_problems(data, str(FIXTURES))


def test_missing_sources_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"benchmark\.source.*no copy.*ships.*fetch_data\.py reasoning"):
        load_problems(_bench("aime24").data, "local")
    with pytest.raises(ConfigError, match=r"opencompass/AIME2025.*fetch_data\.py reasoning"):
        load_problems(_bench("aime25").data, str(tmp_path))
    bad = tmp_path / "zwhe99" / "amc23" / "default"
    bad.mkdir(parents=True)
    (bad / "test.jsonl").write_text(json.dumps({"question": "q", "answer": None}) + "\n")
    with pytest.raises(ConfigError, match="`answer` must be a string or a number"):
        load_problems(_bench("amc23").data, str(tmp_path))


# ---------------------------------------------------------------- prompts


def test_prompts_follow_the_model_and_cyclicreflex_release():
    instruction = str(_bench("math500").instruction)
    deepseek = PromptFormat.from_cfg(compose_cfg("model=deepseek-r1-distill-qwen-1.5b").model.prompt)
    assert deepseek.think_end == "</think>"
    assert reasoning_prompt(deepseek, instruction, "What is 1+1?") == (
        "You are a helpful AI bot that answers questions for a user. Keep your response short and direct. "
        "<｜User｜>Question: What is 1+1?\nLet's reason this step by step.\nAnswer: <think>"
    )
    smol = PromptFormat.from_cfg(compose_cfg().model.prompt)  # no reasoning prompt: its chat turn
    assert smol.think_end is None
    assert reasoning_prompt(smol, instruction, "What is 1+1?") == (
        "<|im_start|>user\nQuestion: What is 1+1?\nLet's reason this step by step.\nAnswer:<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    for name in ("deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-llama-8b"):
        assert PromptFormat.from_cfg(compose_cfg(f"model={name}").model.prompt) == deepseek


# ---------------------------------------------------------------- config checks


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


# ---------------------------------------------------------------- evaluation-only jobs end to end


def test_evaluation_only_job_on_the_tiny_model(smoke_cfg, tmp_path):
    cfg = smoke_cfg("decoding=cyclicreflex", "decoding.period=8", "decoding.amplitude=50", "decoding.do_sample=false")
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


def test_samples_per_problem_give_mean_accuracy_and_pass_at_k(smoke_cfg, tmp_path, shared_cache):
    cfg = smoke_cfg("decoding=sample", "decoding.n=4", "benchmark.subset=2", "benchmark.pass_k=[1,2,4,8]")
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


# ---------------------------------------------------------------- s1 on a tiny model


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


def test_budget_forcing_inserts_wait_and_forces_the_end_on_a_tiny_model(smoke_cfg, shared_cache):
    cfg = smoke_cfg()
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


# ---------------------------------------------------------------- a sweep over decoding=, and its report


def test_sweep_over_decoding_runs_logs_and_reports(shared_cache, tmp_path):
    """Three evaluation-only jobs as a Hydra sweep, logged to W&B (offline), then the reasoning report."""
    from tests.wandb_offline import read_offline_run

    sweep = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    env |= {var: str(tmp_path / "wandb-home" / var.lower()) for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR")}
    env |= {"WANDB_DATA_DIR": str(tmp_path / "wandb-home" / "data"), "NETRC": str(tmp_path / "no-netrc")}
    cmd = [
        sys.executable,
        "-m",
        "runner",
        "-m",
        SMOKE,
        "decoding=greedy,cyclicreflex,tip",
        "decoding.seed=5",
        "logger=wandb",
        "logger.mode=offline",
        f"paths.cache_dir={shared_cache}",
        f"hydra.sweep.dir={sweep}",
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(sweep.rglob("results.json"))]
    assert sorted(r["choices"]["decoding"] for r in results) == ["cyclicreflex", "greedy", "tip"]
    assert all(r["status"] == "completed" and r["choices"]["method"] == "none" for r in results)
    by = {r["choices"]["decoding"]: r for r in results}
    assert by["tip"]["config"]["decoding"]["delta"] == -3.0 and by["greedy"]["config"]["decoding"]["do_sample"] is False
    logged = [read_offline_run(next(p.glob("offline-run-*"))) for p in sorted(sweep.rglob("wandb")) if p.is_dir()]
    assert sorted(r["name"] for r in logged) == [
        "none-gsm8k-tiny-cyclicreflex-s0",
        "none-gsm8k-tiny-s0",
        "none-gsm8k-tiny-tip-s0",
    ]
    assert len({r["group"] for r in logged}) == 1  # one sweep, one group
    assert all(
        r["summary"]["evaluated/accuracy"] == by[r["config"]["choice.decoding"]]["metrics"]["evaluated"]["accuracy"]
        for r in logged
    )

    report = subprocess.run(
        [sys.executable, "-m", "runner.report", str(sweep), "report=reasoning"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    for label in ("tiny, GSM8K, Greedy", "tiny, GSM8K, CyclicReflex", "tiny, GSM8K, TIP"):
        assert label in report.stdout
    assert "Accuracy (%)" in report.stdout and "pass@4" not in report.stdout  # n=1: no pass@k column
    png = sweep / "report_reasoning_reflection_frequency.png"
    assert png.is_file() and png.stat().st_size > 10_000


def test_tracker_run_name_of_an_evaluation_only_job():
    from omegaconf import OmegaConf

    from runner.output.trackers.wandb import default_run_name

    config = OmegaConf.to_container(
        compose_cfg("method=none", "benchmark=math500", "decoding=cyclicreflex", "model=tiny", "seed=3"), resolve=True
    )
    assert default_run_name(config, {}) == "none-math500-tiny-cyclicreflex-s3"
    assert default_run_name(config, {"method": "none", "benchmark": "math500"}).startswith("none-math500-tiny")
