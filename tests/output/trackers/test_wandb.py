"""The W&B tracker: real tiny jobs logged offline, read back from the run files they wrote; naming and grouping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner import job
from runner.errors import ConfigError
from runner.output import secrets
from runner.output.record import flatten
from runner.output.trackers.wandb import default_run_name, sweep_group, wandb_api_key_configured
from tests.conftest import ROOT, compose_cfg
from tests.output.test_secrets import CONFIG_SECRET, HF_SECRET, WANDB_SECRET
from tests.wandb_offline import read_offline_run


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """W&B's own caches and settings under tmp; no API key, so `mode: auto` means offline."""
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return tmp_path


def _files_holding(root: Path, *needles: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path}: {n[:6]}..." for n in needles if n.encode() in data]
    return hits


def test_wandb_offline_run_holds_config_curves_summary_and_no_secret(shared_cache, wandb_env, tmp_path):
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "RUNNER_CACHE": str(shared_cache),
        "HF_TOKEN": HF_SECRET,
        "WANDB_API_KEY": WANDB_SECRET,  # a key is configured, but the config pins offline mode
    }
    cmd = [
        sys.executable,
        "-m",
        "runner",
        "experiment=tofu_smoke_tiny",
        "logger=wandb",
        "logger.mode=offline",
        "logger.tags=[smoke]",
        f"+service.api_key={CONFIG_SECRET}",
        "+db.password=Hunter2pass",  # short: never in the offline run files either (its metadata holds argv)
        f"hydra.run.dir={run_dir}",
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed"

    # secrets: not in results.json, Hydra's saved config, the job log, the W&B files, nor the console
    assert _files_holding(run_dir, HF_SECRET, WANDB_SECRET, CONFIG_SECRET, "Hunter2pass") == []
    assert not any(s in out.stdout + out.stderr for s in (HF_SECRET, WANDB_SECRET, CONFIG_SECRET))
    assert results["config"]["service"]["api_key"] == secrets.REDACTED
    assert f"+service.api_key={secrets.REDACTED}" in results["overrides"]
    assert (run_dir / "__main__.log").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()

    # the offline run, read back from its .wandb transaction log
    wandb_dirs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_dirs) == 1
    stored = read_offline_run(wandb_dirs[0])
    assert stored["name"] == "npo-tofu-tiny-s0" and stored["tags"] == ["smoke"] and stored["exit_code"] == 0
    for row, metrics in results["metrics"].items():
        for metric, value in metrics.items():
            assert stored["summary"][f"{row}/{metric}"] == pytest.approx(value, rel=1e-12)
    assert stored["summary"]["status"] == "completed"
    assert stored["config"]["unlearn.learning_rate"] == pytest.approx(1e-3)
    assert stored["config"]["choice.method"] == "npo" and stored["config"]["service.api_key"] == secrets.REDACTED
    # per-step curves of the unlearning stage: loss, NPO's own terms, learning rate, gradient norm
    curves = [h for h in stored["history"] if "unlearn/loss" in h]
    assert len(curves) >= 3
    assert {"unlearn/npo_forget", "unlearn/retain_nll", "unlearn/learning_rate", "unlearn/grad_norm"} <= set(curves[0])
    assert [h["unlearn/step"] for h in curves] == sorted(h["unlearn/step"] for h in curves)
    assert curves[-1]["unlearn/step"] == results["training"]["unlearn"]["steps"]
    # per-example results as a W&B Table: one row per model, suite and example
    table_meta = next(h["per_example"] for h in stored["history"] if "per_example" in h)
    # a suite's rows: its longest per-example list (the holdout suite has MIA scores, no probability)
    n_rows = sum(
        max(len(v) for v in s.values() if isinstance(v, list))
        for model in results["per_example"].values()
        for s in model.values()
        if isinstance(s, dict) and any(isinstance(v, list) for v in s.values())
    )
    assert table_meta["_type"] == "table-file" and table_meta["nrows"] == n_rows
    table = json.loads((wandb_dirs[0] / "files" / table_meta["path"]).read_text())
    assert table["columns"][:3] == ["model", "suite", "index"] and len(table["data"]) == n_rows
    # the final metrics with their labels and arrows (runner/output/metrics.py), one column per model
    meta = next(h["metrics"] for h in stored["history"] if "metrics" in h)
    metrics = json.loads((wandb_dirs[0] / "files" / meta["path"]).read_text())
    assert metrics["columns"] == ["metric", "label", "better", *results["metrics"]]
    rows = {row[0]: row for row in metrics["data"]}
    assert rows["forget_prob"][1:3] == ["Forget Prob.", "↓"] and rows["model_utility"][1:3] == ["Model Utility", "↑"]
    assert rows["forget_prob"][3:] == pytest.approx([m["forget_prob"] for m in results["metrics"].values()])


def test_wandb_run_of_a_failed_job_is_closed_as_failed(tiny_cfg, wandb_env, tmp_path):
    with pytest.raises(ConfigError):
        job.run(tiny_cfg("logger=wandb", f"benchmark.source={tmp_path / 'nowhere'}"), tmp_path / "run")
    stored = read_offline_run(tmp_path / "run" / "wandb")
    assert stored["exit_code"] == 1
    assert stored["summary"]["status"] == "failed" and "benchmark.source" in stored["summary"]["error"]


def test_online_mode_needs_a_configured_key(tmp_path):
    netrc = tmp_path / "netrc"
    assert not wandb_api_key_configured({"NETRC": str(netrc)})
    assert wandb_api_key_configured({"WANDB_API_KEY": "x" * 40, "NETRC": str(netrc)})
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")
    netrc.chmod(0o600)
    assert wandb_api_key_configured({"NETRC": str(netrc)})
    assert not wandb_api_key_configured({"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.org"})


def test_run_name_and_group():
    config = {"seed": 3, "method": {"_target_": "runner.methods.npo.NPO"}, "benchmark": {"name": "tofu"}}
    config |= {"model": {"name": "tiny"}, "coreset": {"name": "random", "ratio": 0.1}}
    config |= {"finetune_attack": None, "distributed": None}  # null: none
    assert default_run_name(config, {}) == "npo-tofu-tiny-random0.1-s3"
    assert (
        default_run_name(config | {"finetune_attack": {"name": "relearn"}}, {}) == "npo-tofu-tiny-random0.1-relearn-s3"
    )
    assert default_run_name(config | {"coreset": None}, {}) == "npo-tofu-tiny-s3"
    assert default_run_name(config, {"method": "simnpo", "model": "llama2-7b-chat"}).startswith("simnpo-tofu-llama2")
    assert sweep_group({"sweep_name": "coreset_wmdp"}) == "coreset_wmdp"
    assert sweep_group({}) is None  # not inside a Hydra multirun
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": {}}) == {"a.b": 1, "a.c": [1, 2], "d": {}}


def test_sweep_jobs_are_one_wandb_group_named_after_the_sweep(sweep):
    runs = {}
    for run_dir in sweep.glob("*/wandb/offline-run-*"):
        stored = read_offline_run(run_dir)
        runs[stored["name"]] = stored
    assert set(runs) == {"ga-tofu-tiny-s40", "ga-tofu-tiny-s41", "npo-tofu-tiny-s40", "npo-tofu-tiny-s41"}
    assert {r["group"] for r in runs.values()} == {sweep.name}  # the multirun directory's name
    results = json.loads(next(sweep.glob("*method=npo*seed=41*/results.json")).read_text())
    assert (
        runs["npo-tofu-tiny-s41"]["summary"]["unlearned/forget_prob"] == results["metrics"]["unlearned"]["forget_prob"]
    )


def test_run_name_of_an_evaluation_only_job():
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(
        compose_cfg("method=none", "benchmark=math500", "decoding=cyclicreflex", "model=tiny", "seed=3"), resolve=True
    )
    assert default_run_name(config, {}) == "none-math500-tiny-cyclicreflex-s3"
    assert default_run_name(config, {"method": "none", "benchmark": "math500"}).startswith("none-math500-tiny")
