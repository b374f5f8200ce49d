"""The full TOFU pipeline on the tiny model: it memorises a few facts (target fine-tune), then unlearns them."""

from __future__ import annotations

import json

import pytest

from runner import job

REQUIRED = {"status", "job_key", "config", "metrics", "evaluation", "per_example", "training", "timings", "versions"}


@pytest.mark.parametrize("method", ["ga", "graddiff", "npo"])
def test_unlearning_lowers_forget_metrics(tiny_cfg, tmp_path, method):
    cfg = tiny_cfg(f"method={method}")
    result = job.run(cfg, tmp_path)

    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["status"] == "completed"
    assert set(on_disk) >= REQUIRED
    assert on_disk["config"]["method"]["_target_"] == cfg.method._target_
    for stage in ("load_model", "build_benchmark", "finetuned_models", "unlearn", "evaluate"):
        assert on_disk["timings"][stage] >= 0
    assert on_disk["training"]["unlearn"]["steps"] > 0

    target, retain, unlearned = (result["metrics"][k] for k in ("target", "retain", "unlearned"))
    # the target memorised the forget set better than the model that never saw it
    assert target["forget_prob"] > retain["forget_prob"]
    # unlearning removes most of it
    assert unlearned["forget_prob"] < 0.5 * target["forget_prob"]
    assert 0.0 <= unlearned["forget_quality"] <= 1.0
    assert retain["forget_quality"] == pytest.approx(1.0)
    # answers long enough for ROUGE to tell the three models apart (a short cap made them equal)
    assert len({target["retain_rouge"], retain["retain_rouge"], unlearned["retain_rouge"]}) == 3

    per = on_disk["per_example"]["unlearned"]
    n_forget = cfg.benchmark.subset.forget
    assert len(per["forget"]["prob"]) == n_forget
    assert len(per["forget"]["truth_ratio"]) == n_forget
    assert len(per["forget"]["generation"]) == n_forget
    assert set(per) == {"forget", "retain", "real_authors", "world_facts"}


def test_graddiff_kl_retain_term_runs(tiny_cfg, tmp_path):
    result = job.run(tiny_cfg("method=graddiff", "method.retain_loss=kl"), tmp_path)
    assert result["status"] == "completed"
    assert result["metrics"]["unlearned"]["forget_prob"] < result["metrics"]["target"]["forget_prob"]


# per-method settings that fit the 2-layer tiny model
RMU_TINY = ["method.layer=1", "method.trainable_layers=[0,1]", "method.steering_coeff=20", "method.alpha=10"]
ZOO = {
    "simnpo": ["method=simnpo"],
    "idkdpo": ["method=idkdpo"],
    "wga": ["method=wga"],
    "undial": ["method=undial"],
    "rmu": ["method=rmu", *RMU_TINY],
    "task_vector": ["method=task_vector"],
    "blur": ["method=blur"],
    "blur_rmu": [
        "method=blur",
        "method@method.base=rmu",
        "method.base.layer=1",
        "method.base.trainable_layers=[0,1]",
        "method.base.steering_coeff=20",
        "method.base.alpha=10",
    ],
    "ilu": ["method=ilu", "method.env_examples=8"],
    "ilu_rmu_scalar": [
        "method=ilu",
        "method.env_examples=8",
        "method.reading=scalar",
        "method@method.base=rmu",
        "method.base.layer=1",
        "method.base.trainable_layers=[0,1]",
        "method.base.steering_coeff=20",
        "method.base.alpha=10",
    ],
}


@pytest.mark.parametrize("case", sorted(ZOO))
def test_method_zoo_end_to_end(tiny_cfg, tmp_path, case):
    result = job.run(tiny_cfg(*ZOO[case]), tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "completed"
    target, unlearned = result["metrics"]["target"], result["metrics"]["unlearned"]
    assert unlearned["forget_prob"] < target["forget_prob"]
