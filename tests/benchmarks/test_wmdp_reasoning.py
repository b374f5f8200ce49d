"""WMDP answered with reasoning (runner/benchmarks/wmdp_reasoning.py): config checks, and a whole tiny job
with the leak rule, a tiny judge and GSM8K utility, down to the r2mu report's table."""

from __future__ import annotations

import json
import statistics

import pytest

from runner import job
from runner.benchmarks.wmdp import WmdpBenchmark
from runner.benchmarks.wmdp_reasoning import WmdpReasoning, problem_text
from runner.errors import ConfigError
from runner.output.preset import load_preset
from runner.output.report import write_report
from tests.conftest import FIXTURES_DIR, experiment_cfg

ON = ["benchmark.reasoning.enabled=true"]


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["benchmark.reasoning.utility=[gsm8k]"], "benchmark.reasoning.utility"),  # utility without reasoning
        ([*ON, "benchmark.reasoning.utility=[aime24]"], "benchmark.reasoning.utility"),  # not a composed suite
        ([*ON, "benchmark.questions=[cyber]", "benchmark.reasoning.sets=[bio]"], "benchmark.reasoning.sets"),
        ([*ON, "benchmark.reasoning.max_new_tokens=0"], "benchmark.reasoning.max_new_tokens"),
        ([*ON, "benchmark.reasoning.questions=1.5"], "benchmark.reasoning.questions"),
        ([*ON, "benchmark.reasoning.instruction='{q}'"], "benchmark.reasoning.instruction"),
        ([*ON, "benchmark.reasoning.text_rule=most"], "benchmark.reasoning.text_rule"),
    ],
)
def test_bad_reasoning_options_stop_at_the_job_key(shared_cache, overrides, key):
    # WmdpBenchmark.inputs runs when the job key is computed: before the model is loaded
    cfg = experiment_cfg("wmdp_smoke_tiny", shared_cache, *overrides)
    with pytest.raises(ConfigError) as err:
        WmdpBenchmark.inputs(cfg.benchmark)
    assert err.value.key == key and "Fix:" in str(err.value)


def test_a_bad_option_fails_the_job_before_any_stage(shared_cache, tmp_path):
    cfg = experiment_cfg("wmdp_smoke_tiny", shared_cache, *ON, "benchmark.reasoning.max_new_tokens=0", "seed=518")
    with pytest.raises(ConfigError, match="benchmark.reasoning.max_new_tokens"):
        job.run(cfg, tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed" and "benchmark.reasoning.max_new_tokens" in json.dumps(record)
    assert not record.get("timings")  # no stage ran: the model was never loaded


def test_problem_text_letters_the_choices():
    row = {"question": " Which? ", "choices": ["a", "b", "c", "d"], "answer": 1}
    assert problem_text(row) == "Which?\nA. a\nB. b\nC. c\nD. d"


def test_aggregate_and_summary_by_hand():
    per = {
        "choice": ["A", None, "C", "B"],
        "correct": [True, False, False, True],
        "leak": [True, False, True, False],
        "leak_by": ["text", None, "letter", None],
        "options_named": [4, 0, 1, 2],
        "length": [10, 20, 30, 40],
        "thinking_length": [5, 20, 25, 40],
    }
    agg = WmdpReasoning.aggregate(per) | WmdpReasoning.judge_aggregate([True, None, False, False])
    assert agg == {
        "accuracy": 0.5,
        "n": 4,
        "unparseable": 1,
        "leak_rate": 0.5,
        "leak_by_text": 1,
        "leak_by_letter": 1,
        "leak_by_text_naming_all": 1,
        "mean_length": 25.0,
        "mean_thinking_length": 22.5,
        "judge_leak_rate": 1 / 3,
        "judge_parsed": 3,
        "judge_unparseable": 1,
    }
    reasoning = WmdpReasoning.__new__(WmdpReasoning)  # summary reads only which utility suites ran
    reasoning.utility = {"gsm8k": None}
    suites = {"wmdp_bio_reasoning": agg, "wmdp_bio": {"accuracy": 0.3}, "gsm8k": {"accuracy": 0.25, "mean_length": 7}}
    assert reasoning.summary(suites) == {
        "wmdp_bio_reasoning": 0.5,
        "wmdp_bio_reasoning_unparseable": 1,
        "wmdp_bio_trace_leak": 0.5,
        "wmdp_bio_trace_leak_judge": 1 / 3,
        "wmdp_bio_judge_unparseable": 1,
        "gsm8k_accuracy": 0.25,
        "gsm8k_mean_length": 7,
    }


REASONING_TINY = [
    "method=npo",
    "unlearn.max_steps=1",
    "seed=517",  # no other test runs this seed: the job is computed, not a reused one
    *ON,
    "benchmark.reasoning.sets=[bio]",
    "benchmark.reasoning.questions=4",
    "benchmark.reasoning.max_new_tokens=12",
    "+model@benchmark.reasoning.judge.model=tiny",
    "benchmark.reasoning.judge.max_new_tokens=4",
    "benchmark.reasoning.utility=[gsm8k]",
    "benchmark.reasoning.suites.gsm8k.subset=2",
    "benchmark.reasoning.suites.gsm8k.max_new_tokens=8",
]


def test_wmdp_with_reasoning_end_to_end(shared_cache, tmp_path):
    cfg = experiment_cfg("wmdp_smoke_tiny", shared_cache, *REASONING_TINY)
    run_dir = tmp_path / "npo"
    job.run(cfg, run_dir, choices={"method": "npo", "benchmark": "wmdp", "model": "tiny"})
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed"
    bio_file = FIXTURES_DIR / "hub" / "cais" / "wmdp" / "wmdp-bio" / "test.jsonl"
    bio = [json.loads(line) for line in bio_file.read_text().splitlines()][:4]
    for row in ("target", "unlearned"):
        metrics, suites = record["metrics"][row], record["evaluation"][row]
        per = record["per_example"][row]["wmdp_bio_reasoning"]
        agg = suites["wmdp_bio_reasoning"]
        assert agg["n"] == len(per["generation"]) == 4 and all(n <= 12 for n in per["length"])
        # the record's numbers are the per-question values counted: accuracy, unparseable, leak rate
        assert per["correct"] == [c == "ABCD"[r["answer"]] for c, r in zip(per["choice"], bio, strict=True)]
        assert metrics["wmdp_bio_reasoning"] == agg["accuracy"] == statistics.fmean(per["correct"])
        assert metrics["wmdp_bio_reasoning_unparseable"] == sum(c is None for c in per["choice"])
        assert metrics["wmdp_bio_trace_leak"] == statistics.fmean(per["leak"])
        assert per["leak"] == [b is not None for b in per["leak_by"]]
        # the judge: a verdict per question, parsed or counted unparseable; its rate only over parsed ones
        verdicts = per["judge_leak"]
        assert len(per["judge_reply"]) == len(verdicts) == 4
        assert metrics["wmdp_bio_judge_unparseable"] == sum(v is None for v in verdicts)
        parsed = [v for v in verdicts if v is not None]
        assert metrics.get("wmdp_bio_trace_leak_judge") == (statistics.fmean(parsed) if parsed else None)
        # MCQ scoring and MMLU as before, GSM8K as reasoning utility
        assert {"wmdp_bio", "wmdp_cyber", "wmdp_chem", "mmlu"} <= set(metrics)
        assert suites["gsm8k"]["n_problems"] == 2 and metrics["gsm8k_accuracy"] == suites["gsm8k"]["accuracy"]
        assert metrics["gsm8k_mean_length"] == suites["gsm8k"]["mean_length"] <= 8
        assert "wmdp_cyber_reasoning" not in metrics  # sets=[bio]
    assert record["evaluation"]["unlearned"]["wmdp_bio_reasoning"]["generation"]["tokens_per_s"] > 0

    # the r2mu preset's table holds the new columns, for the original and the unlearned model
    result = write_report([tmp_path], load_preset("r2mu"), plots=False)
    header, *rows = [line for line in result["markdown"].splitlines() if line.startswith("| ")]
    for label in ("WMDP-Bio ↓", "WMDP-Bio w/ reasoning ↓", "WMDP-Bio trace leak (rule) ↓", "MMLU ↑", "GSM8K ↑"):
        assert label in header
    assert "MATH-500" not in header  # no run evaluated it: the column is dropped
    assert [r.split("|")[1].strip().strip("*") for r in rows] == ["Original", "NPO"]
    leak = 100 * record["metrics"]["unlearned"]["wmdp_bio_trace_leak"]
    assert f"{leak:.1f}" in rows[-1]
    # the tiny judge parsed no verdict (its rate is absent, so is the column); a second record with a judge
    # rate, as a run whose judge answered would write it, labelled R²MU, shows the judge column beside the rule's
    judged = json.loads(json.dumps(record))
    judged["job_key"] = f"{record['job_key']}-judged"
    judged["choices"]["method"] = "r2mu"
    judged["metrics"]["unlearned"]["wmdp_bio_trace_leak_judge"] = 0.25
    (tmp_path / "r2mu").mkdir()
    (tmp_path / "r2mu" / "results.json").write_text(json.dumps(judged))
    result = write_report([tmp_path], load_preset("r2mu"), plots=False)
    header, *rows = [line for line in result["markdown"].splitlines() if line.startswith("| ")]
    assert "WMDP-Bio trace leak (judge) ↓" in header
    assert [r.split("|")[1].strip().strip("*") for r in rows] == ["Original", "NPO", "R²MU"]
    assert "25.0" in rows[-1].split("|")[header.split("|").index(" WMDP-Bio trace leak (judge) ↓ ")]
