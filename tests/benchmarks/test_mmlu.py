"""benchmark=mmlu (runner/benchmarks/mmlu.py): MMLU on its own, in an evaluation-only job."""

from __future__ import annotations

import json

import pytest

from runner import job
from runner.errors import ConfigError
from tests.conftest import compose_cfg

TINY_MMLU = ["model=tiny", "precision=fp32", "method=none", "benchmark=mmlu", "benchmark.per_subject=2"]


def test_mmlu_alone_evaluates_the_loaded_model(tmp_path, shared_cache):
    result = job.run(compose_cfg(*TINY_MMLU, f"paths.cache_dir={shared_cache}"), tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == record["status"] == "completed"
    per = record["per_example"]["evaluated"]["mmlu"]
    assert len(per["prediction"]) == 2 * len(set(per["subject"])) == 16  # the 8 shipped subjects, 2 each
    right = sum(p == a for p, a in zip(per["prediction"], per["answer"], strict=True))
    assert record["metrics"]["evaluated"]["mmlu"] == pytest.approx(right / 16)
    letters = record["answer_letters"]["evaluated"]["mmlu"]
    assert sum(letters["counts"].values()) == 16 and letters["accuracy"] == pytest.approx(right / 16)


def test_mmlu_unlearns_nothing(tmp_path, shared_cache):
    cfg = compose_cfg(*TINY_MMLU, "method=npo", f"paths.cache_dir={shared_cache}")
    with pytest.raises(ConfigError) as err:
        job.run(cfg, tmp_path)
    assert err.value.key == "method" and "method=none" in str(err.value)
    assert "load_model" not in json.loads((tmp_path / "results.json").read_text()).get("timings", {})
