"""A Hydra sweep over decoding= runs evaluation-only jobs, logs them and reports them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, run_report

SMOKE = "experiment=reasoning_smoke_tiny"


def test_sweep_over_decoding_runs_logs_and_reports(shared_cache, tmp_path):
    """Three evaluation-only jobs as a Hydra sweep, logged to W&B (offline), then the reasoning report."""
    from tests.wandb_offline import read_offline_run

    sweep = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    env |= {var: str(tmp_path / "wandb-home" / var.lower()) for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR")}
    env |= {"WANDB_DATA_DIR": str(tmp_path / "wandb-home" / "data"), "NETRC": str(tmp_path / "no-netrc")}
    cmd = [
        sys.executable,
        "-m",
        "runner",
        "-m",
        SMOKE,
        "decoding=greedy,cyclicreflex,tip",
        "decoding.seed=5",
        "logger=wandb",
        "logger.mode=offline",
        f"paths.cache_dir={shared_cache}",
        f"hydra.sweep.dir={sweep}",
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(sweep.rglob("results.json"))]
    assert sorted(r["choices"]["decoding"] for r in results) == ["cyclicreflex", "greedy", "tip"]
    assert all(r["status"] == "completed" and r["choices"]["method"] == "none" for r in results)
    by = {r["choices"]["decoding"]: r for r in results}
    assert by["tip"]["config"]["decoding"]["delta"] == -3.0 and by["greedy"]["config"]["decoding"]["do_sample"] is False
    logged = [read_offline_run(next(p.glob("offline-run-*"))) for p in sorted(sweep.rglob("wandb")) if p.is_dir()]
    assert sorted(r["name"] for r in logged) == [
        "none-gsm8k-tiny-cyclicreflex-s0",
        "none-gsm8k-tiny-s0",
        "none-gsm8k-tiny-tip-s0",
    ]
    assert len({r["group"] for r in logged}) == 1  # one sweep, one group
    assert all(
        r["summary"]["evaluated/accuracy"] == by[r["config"]["choice.decoding"]]["metrics"]["evaluated"]["accuracy"]
        for r in logged
    )

    report = run_report(str(sweep), "report=reasoning")
    assert report.returncode == 0, report.stderr[-3000:]
    for label in ("tiny, GSM8K, Greedy", "tiny, GSM8K, CyclicReflex", "tiny, GSM8K, TIP"):
        assert label in report.stdout
    assert "Accuracy (%)" in report.stdout and "pass@4" not in report.stdout  # n=1: no pass@k column
    png = sweep / "report_reasoning_reflection_frequency.png"
    assert png.is_file() and png.stat().st_size > 10_000
