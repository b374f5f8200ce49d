"""The distillation job end to end on the tiny model: condense, fine-tune, evaluate, record; and a sweep."""

from __future__ import annotations

import json
import subprocess
import sys

from runner import job
from runner.output.preset import load_preset
from runner.output.report import write_report
from tests.conftest import ROOT, compose_cfg

TINY_DISTILL = [
    "task=distill",
    "model=tiny",
    "precision=fp32",
    "traces.subset=12",
    "benchmark.subset=3",
    "benchmark.max_new_tokens=8",
    "benchmark.reflection_words=[a,e]",  # the tiny tokenizer holds no reflection word as one token
    "distill.max_length=256",
    "distill.train.epochs=1",
    "distill.train.batch_size=4",
    "eval.batch_size=4",
]


def test_distillation_job_condenses_trains_and_evaluates(tmp_path, shared_cache):
    cfg = compose_cfg(*TINY_DISTILL, "condense=epic", "condense.ratio=0.5", f"paths.cache_dir={shared_cache}")
    result = job.run(cfg, tmp_path)
    assert result["status"] == "completed"
    record = json.loads((tmp_path / "results.json").read_text())
    assert set(record["timings"]) >= {"load_model", "build_benchmark", "condense", "finetune", "evaluate"}
    distill = record["distill"]
    assert distill["condenser"] == "epic" and distill["examples"] + distill["dropped_too_long"] == 12
    per = distill["per_example"]
    # every example keeps round(thoughts / 2) of its thoughts (at least one), head and tail
    for e in per:
        k = max(1, round(e["thoughts"] / 2))
        assert len(e["kept"]) == k and e["kept"][: (k + 1) // 2] == list(range((k + 1) // 2))
    assert distill["response_tokens_kept"] == sum(e["response_tokens"] for e in per)
    assert distill["response_tokens_kept"] < distill["response_tokens_full"]
    metrics = record["metrics"]["distilled"]
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["mean_length"] > 0
    assert metrics["train_tokens"] == record["training"]["distill"]["trained_tokens"] > 0
    assert record["training"]["distill"]["steps"] == -(-distill["examples"] // 4)  # one epoch of batches of 4


def test_a_sweep_over_condensers_and_ratios_runs_every_point(tmp_path, shared_cache):
    cmd = [
        sys.executable,
        "-m",
        "runner",
        "-m",
        *TINY_DISTILL,
        "traces.subset=4",
        "benchmark.subset=1",
        "condense=none,epic",
        "condense.ratio=0.25,0.75",
        f"paths.cache_dir={shared_cache}",
        f"hydra.sweep.dir={tmp_path}",
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.rglob("results.json"))]
    assert len(records) == 4 and all(r["status"] == "completed" for r in records)
    kept = {(r["distill"]["condenser"], r["distill"]["ratio"]): r["distill"]["response_tokens_kept"] for r in records}
    full = {r["distill"]["response_tokens_full"] for r in records}
    assert len(full) == 1  # the same examples for every point
    full_tokens = full.pop()
    # none keeps everything whatever the ratio: its two points are one job at ratio 1.0, trained once
    assert kept[("none", 1.0)] == full_tokens and len(kept) == 3
    none = [r for r in records if r["distill"]["condenser"] == "none"]
    assert len(none) == 2 and len({r["job_key"] for r in none}) == 1 and sum("reused_from" in r for r in none) == 1
    # GSM8K traces have 2-5 thoughts: a quarter keeps one of each, three quarters most of them
    assert kept[("epic", 0.25)] < kept[("epic", 0.75)] <= kept[("none", 1.0)]

    # the paper-form table and plot: one row per condensation and kept ratio
    result = write_report([tmp_path], load_preset("epic"), out=tmp_path / "report")
    table = result["table"]
    assert [c.id for c in table.columns] == [
        "train_tokens",
        "train_seconds",
        "kept_token_fraction",
        "accuracy",
        "mean_length",
    ]
    lines = result["markdown"].splitlines()
    for (name, ratio), tokens in kept.items():
        label = {"epic": "EPiC", "none": "none"}[name]
        (row,) = [line for line in lines if line.startswith(f"| {label}, {ratio} |")]
        record = next(r for r in records if (r["distill"]["condenser"], r["distill"]["ratio"]) == (name, ratio))
        assert f"{record['metrics']['distilled']['train_tokens']:.0f}" in row
        assert f"{100 * tokens / full_tokens:.1f}" in row  # response tokens kept (%)
    assert (tmp_path / "report" / "report_epic_coreset_curve.png").is_file()
