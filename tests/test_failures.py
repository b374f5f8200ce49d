"""Failure paths: bad input, NaN loss, interruption, and the caches that make reruns cheap."""

from __future__ import annotations

import json

import pytest

from runner import job
from runner.errors import ConfigError, TrainingDiverged


def _status(run_dir):
    path = run_dir / "results.json"
    return json.loads(path.read_text())["status"] if path.exists() else None


@pytest.mark.parametrize(
    "override,key",
    [
        ("unlearn.learning_rate=-1e-5", "unlearn.learning_rate"),
        ("unlearn.epochs=0", "unlearn.epochs"),
        ("benchmark.finetune.learning_rate=0", "benchmark.finetune.learning_rate"),
        ("benchmark.forget_split=forget07", "benchmark.forget_split"),
        ("benchmark.forget_split=forget05", "benchmark.source"),  # not shipped offline
        ("precision=fp8", "precision"),
    ],
)
def test_bad_input_names_the_key_and_leaves_no_completed_result(tiny_cfg, tmp_path, override, key):
    with pytest.raises(ConfigError) as err:
        job.run(tiny_cfg(override), tmp_path)
    assert f"`{key}`" in str(err.value) and "Fix:" in str(err.value)
    assert _status(tmp_path) in (None, "failed")


def test_missing_data_directory(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="benchmark.source.*forget01"):
        job.run(tiny_cfg(f"benchmark.source={tmp_path / 'nowhere'}"), tmp_path / "run")
    assert _status(tmp_path / "run") == "failed"


def test_hub_model_without_network_points_to_offline_default(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tiny_cfg("model=phi-1.5", f"paths.cache_dir={tmp_path / 'cache'}")
    with pytest.raises(ConfigError) as err:
        job.run(cfg, tmp_path)
    assert "`model.id`" in str(err.value) and "model=smollm2-135m benchmark.source=local" in str(err.value)


def test_nan_loss_marks_the_run_failed_with_the_step(tiny_cfg, tmp_path):
    # gradient ascent at an absurd learning rate blows the weights up within a few steps
    cfg = tiny_cfg("method=ga", "unlearn.learning_rate=1e8", "unlearn.max_grad_norm=0", "unlearn.max_steps=50")
    with pytest.raises(TrainingDiverged):
        job.run(cfg, tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed"
    assert record["error"]["stage"] == "unlearn"
    assert isinstance(record["error"]["step"], int) and record["error"]["step"] >= 1


def test_identical_rerun_reports_stored_result_and_reference_models_are_cached(tiny_cfg, tmp_path, caplog):
    first = job.run(tiny_cfg("seed=11"), tmp_path / "a")
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


def test_partial_target_model_is_rebuilt_by_the_pipeline(tiny_cfg, tmp_path, shared_cache):
    job.run(tiny_cfg("seed=21"), tmp_path / "a")
    markers = list((shared_cache / "finetuned").glob("*/COMPLETE"))
    assert markers
    for marker in markers:  # simulate a job killed while saving the reference models
        marker.unlink()
    result = job.run(tiny_cfg("seed=22"), tmp_path / "b")
    assert {"finetune_target", "finetune_retain"} <= set(result["training"])
    assert all((m.parent / "COMPLETE").exists() for m in markers)


# SIGTERM, kill -9 and a rerun in the same directory: tests/test_faults.py
