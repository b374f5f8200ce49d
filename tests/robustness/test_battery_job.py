"""The battery end to end on the tiny model: a job with every attack and a fine-tuning attack, its record, and
the robustness report (table, plot, GCG suffixes) built from it; bad battery input stops before any fine-tuning."""

from __future__ import annotations

import json

import pytest

from runner import job
from runner.errors import ConfigError
from runner.output.preset import load_preset
from runner.output.report import write_report

SMALL = [
    "robustness_attack=battery",
    "robustness_attack.quantize.questions=2",
    "robustness_attack.prefill.questions=2",
    "robustness_attack.prefill.tokens=[0,2]",
    "robustness_attack.in_context.questions=2",
    "robustness_attack.in_context.k=[1,2]",
    "robustness_attack.gcg.questions=1",
    "robustness_attack.gcg.steps=[1,2]",
    "robustness_attack.gcg.search_width=8",
    "robustness_attack.gcg.top_k=4",
    "robustness_attack.gcg_universal.questions=2",
    "robustness_attack.gcg_universal.train_questions=1",
    "robustness_attack.gcg_universal.steps=[1]",
    "robustness_attack.gcg_universal.search_width=8",
    "finetune_attack=relearn",
    "finetune_attack.train.epochs=1",
    "finetune_attack.eval_examples=2",
]


def test_the_battery_runs_end_to_end_and_reports(tiny_cfg, tmp_path):
    run_dir = tmp_path / "run"
    job.run(tiny_cfg(*SMALL), run_dir)
    result = json.loads((run_dir / "results.json").read_text())
    assert result["status"] == "completed"
    battery = result["robustness"]
    assert set(battery["clean"]) == {"unlearned", "target", "retain"}
    settings = [(p["attack"], p["setting"]) for p in battery["points"]]
    assert settings == [
        ("quantize", "int8"), ("quantize", "int4"), ("prefill", "0 tokens"), ("prefill", "2 tokens"),
        ("in_context", "k=1"), ("in_context", "k=2"), ("gcg", "individual, 1 steps"), ("gcg", "individual, 2 steps"),
        ("gcg_universal", "universal, 1 steps"),
    ]  # fmt: skip
    for p in battery["points"]:
        assert 0 <= p["after"] <= 1 and 0 <= p["target_after"] <= 1 and 0 <= p["retain_after"] <= 1
    prefill0 = battery["points"][2]
    assert prefill0["after"] == pytest.approx(battery["clean"]["unlearned"]["prefill"])  # no prefix: the clean answer
    assert "robustness" in result["timings"] and result["attack"]["name"] == "relearn"

    report = write_report([run_dir], load_preset("robustness"), out=str(tmp_path / "report"))
    names = {f.name for f in report["files"]}
    assert {"report_robustness_battery.md", "report_robustness_recovery.png"} <= names
    text = (tmp_path / "report" / "report_robustness_battery.md").read_text()
    for attack in ("quantize", "prefill", "in_context", "gcg_universal", "finetune:relearn"):
        assert f"| {attack} |" in text  # one table, the fine-tuning attack included
    suffixes = text.split("## GCG suffixes")[1]
    assert suffixes.count("| npo | gcg |") == 2  # the individual suffix at each checkpoint step
    assert suffixes.count("| npo | gcg_universal |") == 1


def test_a_prefill_longer_than_an_answer_stops_before_any_fine_tuning(tiny_cfg, tmp_path):
    cfg = tiny_cfg("robustness_attack=prefill", "robustness_attack.prefill.tokens=[400]")
    with pytest.raises(ConfigError, match=r"`robustness_attack\.prefill\.tokens`.*whole answer"):
        job.run(cfg, tmp_path)
    assert not (tmp_path / "finetune_target").exists() and not (tmp_path / "unlearn").exists()
