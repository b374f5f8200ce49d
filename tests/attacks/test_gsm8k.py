"""The GSM8K attack: trains on drawn solutions and scores held-out questions by exact match."""

from __future__ import annotations

from pathlib import Path

from runner.attacks import Gsm8kAttack
from runner.models import load_model
from tests.attacks.conftest import attack_of, context


def test_gsm8k_attack_trains_and_scores_held_out_questions(tiny):
    cfg, _, _ = tiny
    model, _ = load_model(cfg.model, Path(cfg.paths.cache_dir))
    gsm = attack_of(
        "gsm8k", "finetune_attack.examples=4", "finetune_attack.eval_examples=2", "finetune_attack.max_new_tokens=4",
        "finetune_attack.train.max_steps=1", "finetune_attack.max_length=64",
    )  # fmt: skip
    assert type(gsm) is Gsm8kAttack and [i.path.name for i in gsm.inputs()] == ["train.jsonl", "test.jsonl"]
    result = gsm.run(context(tiny, model), Path(cfg.paths.cache_dir) / "gsm")
    assert result["task_metric"] == "gsm8k_exact_match" and result["training"]["steps"] == 1
    assert result["task_before"] in (0.0, 0.5, 1.0) and result["task_after"] in (0.0, 0.5, 1.0)
