"""The job (runner/job.py): a failed stage leaves a failed record; an identical rerun reports the stored result."""

from __future__ import annotations

import json

import pytest

from runner import job
from runner.errors import ConfigError


def _status(run_dir):
    path = run_dir / "results.json"
    return json.loads(path.read_text())["status"] if path.exists() else None


def test_missing_data_directory(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="benchmark.source.*forget01"):
        job.run(tiny_cfg(f"benchmark.source={tmp_path / 'nowhere'}"), tmp_path / "run")
    assert _status(tmp_path / "run") == "failed"


def test_identical_rerun_reports_stored_result_and_reference_models_are_cached(tiny_cfg, tmp_path, caplog):
    first = job.run(tiny_cfg("seed=11"), tmp_path / "a")
    # every generating call recorded its compile decision: the tiny job's few decode steps do not repay compiling
    calls = first["generation"]["calls"]
    assert first["generation"]["compile"] == "auto" and calls and first["generation"]["compile_seconds"] == 0
    assert all(not c["compiled"] and c["why"].startswith("auto:") and c["tokens"] >= 0 for c in calls)
    assert first["threads"]["intra_op"] >= 1 and first["threads"]["why"].startswith("auto:")
    caplog.clear()
    with caplog.at_level("INFO"):
        again = job.run(tiny_cfg("seed=11"), tmp_path / "b")
    assert "identical job already completed" in caplog.text
    assert again["metrics"] == first["metrics"]
    copy = json.loads((tmp_path / "b" / "results.json").read_text())  # the reused record, pointing at the original
    assert copy["reused_from"] == str(tmp_path / "a" / "results.json") and copy["metrics"] == first["metrics"]

    caplog.clear()
    with caplog.at_level("INFO"):
        other_seed = job.run(tiny_cfg("seed=12"), tmp_path / "c")
    assert "cache hit: TOFU target model" in caplog.text
    assert "cache hit: evaluation of the retain model" in caplog.text
    assert "finetune_target" not in other_seed["training"]  # nothing was fine-tuned again
