"""The TOFU benchmark (runner/benchmarks/tofu.py): answer caps fit every gold answer;
rows with no answer token stop the job."""

from __future__ import annotations

import json

import pytest

from runner import job
from runner.benchmarks.base import build_benchmark
from runner.benchmarks.tofu import SUITES
from runner.data.qa import PromptFormat
from runner.errors import ConfigError
from runner.models import load_model


@pytest.fixture(scope="module")
def tofu_tokenizer(shared_cache):
    from tests.conftest import compose_cfg

    cfg = compose_cfg("experiment=tofu_smoke_tiny", f"paths.cache_dir={shared_cache}")
    return load_model(cfg.model, shared_cache)[1], cfg


def test_auto_cap_fits_the_longest_gold_answer_of_each_suite(tofu_tokenizer):
    tokenizer, cfg = tofu_tokenizer
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


def test_a_job_far_larger_than_the_default_says_so_on_a_cpu(shared_cache):
    import torch

    from runner.unlearning_job import cost_note
    from tests.conftest import compose_cfg

    cfg = compose_cfg("model=tiny", f"paths.cache_dir={shared_cache}")
    tokenizer = load_model(cfg.model, shared_cache)[1]
    fmt = PromptFormat.from_cfg(cfg.model.prompt)
    default = build_benchmark(cfg.benchmark, tokenizer, fmt)
    assert default.evaluated_rows == 160 and cost_note(default, torch.device("cpu"), 3) is None
    # every shipped row of the retain, real-authors and world-facts suites: over twice the default job's rows
    big_cfg = compose_cfg("model=tiny", "benchmark.subset.retain=null", "benchmark.subset.eval_rows=null")
    big = build_benchmark(big_cfg.benchmark, tokenizer, fmt)
    note = cost_note(big, torch.device("cpu"), 3)
    rows = big.evaluated_rows
    assert rows == sum(len(s) for s in big.suites.values()) > 2 * 160
    assert note.startswith(
        f"benchmark=tofu: each evaluation scores {rows} rows, {rows / 160:.1f}x the default job's 160"
    )
    assert "evaluates 3 models" in note and cost_note(big, torch.device("meta"), 3) is None  # not a CPU: silent


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("benchmark.mia.gradnorm=[2,3]", "benchmark.mia.gradnorm"),
        ("benchmark.mia.k=0", "benchmark.mia.k"),
        ("benchmark.holdout.split=holdout77", "benchmark.holdout.split"),
    ],
)
def test_bad_privacy_settings_stop_the_build_naming_the_key(tofu_tokenizer, override, key):
    from tests.conftest import compose_cfg

    tokenizer, cfg = tofu_tokenizer
    bad = compose_cfg("experiment=tofu_smoke_tiny", override)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_benchmark(bad.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
