"""The WMDP benchmark (runner/benchmarks/wmdp.py): the fixture hub layout, the gated corpus, the pipeline."""

from __future__ import annotations

import json
import math

import pytest

from runner import job
from runner.benchmarks.wmdp import WmdpBenchmark
from runner.errors import ConfigError
from tests.conftest import PIPELINE_METHODS as METHODS
from tests.conftest import build_offline, experiment_cfg

WMDP_METRICS = {
    "wmdp_bio",
    "wmdp_cyber",
    "wmdp_chem",
    "mmlu",
    "mmlu_college_biology",
    "mmlu_virology",
    "mmlu_college_computer_science",
    "mmlu_computer_security",
}


def test_wmdp_reads_the_hub_layout(tiny_tokenizer, shared_cache):
    bench = build_offline(WmdpBenchmark, tiny_tokenizer, shared_cache, "wmdp_smoke_tiny")
    assert set(bench.questions) == {"bio", "cyber", "chem"}
    assert all(len(v) == 8 for v in bench.questions.values())
    # forget: 4 texts of the bio stand-in + 4 of cyber-forget-corpus; retain: 4 WikiText + 4 bio-retain
    assert len(bench.forget_rows) == 8 and len(bench.retain_rows) == 8
    assert "moss" in bench.forget_rows[0]["text"] and "Harlow" in bench.forget_rows[4]["text"]
    assert "Homarus" in bench.retain_rows[0]["text"] and "fern" in bench.retain_rows[4]["text"]
    assert bench.finetuned_models == {}  # the loaded model is the one unlearned
    encoded = bench.encode(bench.forget_rows)
    assert [e["index"] for e in encoded] == list(range(8))
    assert all(e["labels"] == e["input_ids"] and len(e["input_ids"]) <= 64 for e in encoded)
    assert len(bench.mmlu.rows) == 16 and {r["subject"] for r in bench.mmlu.rows} == {
        "college_biology",
        "virology",
        "college_computer_science",
        "computer_security",
    }


def test_wmdp_bio_forget_corpus_is_gated(tiny_tokenizer, shared_cache):
    with pytest.raises(ConfigError) as err:
        build_offline(
            WmdpBenchmark, tiny_tokenizer, shared_cache, "wmdp_smoke_tiny", "benchmark.bio_forget_corpus=null"
        )
    msg = str(err.value)
    assert "benchmark.bio_forget_corpus" in msg and "gated" in msg
    assert "https://huggingface.co/datasets/cais/wmdp-bio-forget-corpus" in msg  # where to request access
    assert "benchmark.bio_forget_corpus=/path/to" in msg and "forget_corpora=[cyber]" in msg  # where to put it
    with pytest.raises(ConfigError, match="does not exist"):
        build_offline(
            WmdpBenchmark, tiny_tokenizer, shared_cache, "wmdp_smoke_tiny", "benchmark.bio_forget_corpus=/nowhere.jsonl"
        )
    cyber_only = build_offline(
        WmdpBenchmark,
        tiny_tokenizer,
        shared_cache,
        "wmdp_smoke_tiny",
        "benchmark.bio_forget_corpus=null",
        "benchmark.forget_corpora=[cyber]",
    )
    assert len(cyber_only.forget_rows) == 4


def test_an_evaluation_only_job_needs_no_forget_corpus(shared_cache, tmp_path):
    # the gated bio corpus unset and the forget corpora unreadable: method=none reads the questions only
    cfg = experiment_cfg(
        "wmdp_smoke_tiny",
        shared_cache,
        "method=none",
        "benchmark.bio_forget_corpus=null",
        "benchmark.forget_corpora=[nope]",
    )
    assert job.run(cfg, tmp_path)["status"] == "completed"
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["config"]["benchmark"]["training_data"] is False
    assert set(record["metrics"]["evaluated"]) >= {"wmdp_bio", "wmdp_cyber", "mmlu"}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_wmdp_pipeline(shared_cache, tmp_path, method):
    cfg = experiment_cfg("wmdp_smoke_tiny", shared_cache, *METHODS[method])
    result = job.run(cfg, tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["status"] == "completed"
    assert list(on_disk["metrics"]) == ["target", "unlearned"]
    # nothing is fine-tuned: the stage is named for what it does
    assert "evaluate_loaded_model" in on_disk["timings"] and "finetuned_models" not in on_disk["timings"]
    # the letters each model picked, per question set, counted from its predictions
    letters = on_disk["answer_letters"]["unlearned"]["wmdp_bio"]
    assert sum(letters["counts"].values()) == letters["n"] == 8 and list(letters["counts"]) == ["A", "B", "C", "D"]
    assert set(on_disk["answer_letters"]["target"]) == {"wmdp_bio", "wmdp_cyber", "wmdp_chem", "mmlu"}
    for row in on_disk["metrics"].values():
        assert set(row) == WMDP_METRICS
        assert all(0.0 <= v <= 1.0 for v in row.values())
    per = on_disk["per_example"]
    assert len(per["unlearned"]["wmdp_bio"]["prediction"]) == 8 and len(per["unlearned"]["mmlu"]["subject"]) == 16
    # unlearning moved the model: the choice log-probs of the forget questions changed
    assert per["unlearned"]["wmdp_cyber"]["logprobs"] != per["target"]["wmdp_cyber"]["logprobs"]
    # the forget texts (4 of the bio stand-in + 4 cyber) in batches of 4, every epoch
    assert result["training"]["unlearn"]["steps"] == math.ceil(8 / cfg.unlearn.batch_size) * cfg.unlearn.epochs == 4
