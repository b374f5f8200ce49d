"""save_model: a run keeps its unlearned weights, and load_run_model gives back the same model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from runner import job
from runner.benchmarks.base import build_benchmark
from runner.data.qa import PromptFormat
from runner.errors import ConfigError
from runner.saved_model import load_run_model


def _reevaluate(cfg, run_dir):
    model, tokenizer = load_run_model(run_dir)
    bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
    return model, bench.evaluate(model, cfg.eval, cfg.precision)["suites"]


@pytest.mark.parametrize("how", ["trainable", "full"])
def test_a_saved_run_reloads_to_identical_outputs(tiny_cfg, tmp_path, how):
    # the target fine-tune trains the last layer; RMU then trains the MLP down-projections of both
    # layers: the saved weights must hold all of these, and nothing else
    cfg = tiny_cfg(
        f"save_model={how}",
        "model.trainable_layers=1",
        "method=rmu",
        "method.layer=1",
        "method.trainable_layers=[0,1]",
        "method.alpha=10",
    )
    result = job.run(cfg, tmp_path / "run")
    assert result["status"] == "completed" and result["saved_model"] == str(tmp_path / "run" / "model")
    described = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert described["save_model"] == how and described["base"]["identity"]["tiny"]["hidden_size"] == 64
    model, suites = _reevaluate(cfg, tmp_path / "run")
    # the reloaded model scores every suite exactly as the run's unlearned model did
    recorded = result["evaluation"]["unlearned"]
    # TOFU's four suites, the holdout rows and membership-inference AUCs, and the gibberish check (skipped offline)
    expected = {"forget", "retain", "real_authors", "world_facts", "holdout", "mia", "gibberish"}
    assert set(suites) == set(recorded) == expected
    for suite, values in suites.items():
        for name, value in values.items():
            if isinstance(value, float):
                assert value == pytest.approx(recorded[suite][name], abs=1e-6), (suite, name)
    if how == "trainable":  # small on disk: the trained parameters only
        layer1 = {n for n, _ in model.named_parameters() if n.startswith("model.layers.1.")}
        assert set(described["trainable"]) == layer1 | {"model.layers.0.mlp.down_proj.weight"}
        saved = (tmp_path / "run" / "model" / "trainable.safetensors").stat().st_size
        assert saved < 0.5 * 4 * sum(p.numel() for p in model.parameters())


def test_a_run_without_weights_or_with_a_changed_base_is_refused(tiny_cfg, tmp_path):
    result = job.run(tiny_cfg("seed=31"), tmp_path / "plain")
    assert "saved_model" not in result
    with pytest.raises(ConfigError, match="kept no weights"):
        load_run_model(tmp_path / "plain")
    job.run(tiny_cfg("seed=31", "save_model=trainable"), tmp_path / "kept")
    described = tmp_path / "kept" / "model" / "model.json"
    info = json.loads(described.read_text())
    info["base"]["identity"]["tiny"]["seed"] = 99  # as if the base had been rebuilt differently since
    described.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="the base model has changed since the run"):
        load_run_model(tmp_path / "kept")


def test_bad_choice_is_refused_before_any_stage(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="`save_model`"):
        job.run(tiny_cfg("save_model=all"), tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed" and record["error"]["setting"] == "save_model"


def test_a_reused_result_loads_the_original_runs_weights(tiny_cfg, tmp_path):
    first = job.run(tiny_cfg("seed=33", "save_model=trainable"), tmp_path / "first")
    second = job.run(tiny_cfg("seed=33", "save_model=trainable"), tmp_path / "second")
    assert second["_path"] == str(tmp_path / "first" / "results.json")  # answered by the finished job
    assert not (tmp_path / "second" / "model").exists()
    model, _ = load_run_model(tmp_path / "second")
    saved = load_file(str(tmp_path / "first" / "model" / "trainable.safetensors"))
    params = dict(model.named_parameters())
    assert first["status"] == "completed" and saved
    assert all(torch.equal(params[name], value) for name, value in saved.items())
