"""The relearning attack: relearning a few forget rows brings the others back, end to end."""

from __future__ import annotations

from runner import job


def test_relearning_brings_forgotten_answers_back(tiny_cfg, tmp_path):
    """GA unlearns the tiny model's forget set; relearning 4 of its 8 rows raises the forget Probability again."""
    result = job.run(
        tiny_cfg(
            "method=ga", "seed=11", "finetune_attack=relearn", "finetune_attack.examples=4",
            "finetune_attack.train.epochs=10", "finetune_attack.train.learning_rate=1e-3",
        ),
        tmp_path,
    )  # fmt: skip
    assert result["status"] == "completed"
    metrics = result["metrics"]
    assert list(metrics) == ["target", "retain", "unlearned", "attacked"]
    before, after = metrics["unlearned"]["forget_prob"], metrics["attacked"]["forget_prob"]
    assert before < 0.1 * metrics["target"]["forget_prob"]  # GA did unlearn
    assert after > 100 * before and after - before > 0.005, (before, after)
    rec = result["attack"]
    assert rec["name"] == "relearn" and rec["n_train"] == 4 and rec["training"]["steps"] == 10
    # the 4 forget rows that were not relearned come back too
    assert rec["task_metric"] == "relearn_heldout_prob" and rec["task_after"] > 10 * rec["task_before"]
    assert "attacked" in result["per_example"] and result["timings"]["attack"] > 0
