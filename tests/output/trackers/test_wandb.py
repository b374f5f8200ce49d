"""Tracking (W&B offline, TensorBoard, none) and secrets: real tiny jobs, read back from the files they wrote."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner import job, secrets, tracking
from runner.errors import ConfigError
from tests.conftest import ROOT

# planted secrets: none of these may appear in any file a run writes
HF_SECRET = "hf_PlantedTokenAbCdEfGhIjKlMnOpQrStUv123456"
WANDB_SECRET = "0123456789abcdef0123456789abcdef01234567"  # the shape of a W&B API key
CONFIG_SECRET = "PlantedConfigSecret-91827364"


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
        f"hydra.run.dir={run_dir}",
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed"

    # secrets: not in results.json, Hydra's saved config, the job log, the W&B files, nor the console
    assert _files_holding(run_dir, HF_SECRET, WANDB_SECRET, CONFIG_SECRET) == []
    assert not any(s in out.stdout + out.stderr for s in (HF_SECRET, WANDB_SECRET, CONFIG_SECRET))
    assert results["config"]["service"]["api_key"] == secrets.REDACTED
    assert f"+service.api_key={secrets.REDACTED}" in results["overrides"]
    assert (run_dir / "__main__.log").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()

    # the offline run, read back from its .wandb transaction log
    wandb_dirs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_dirs) == 1
    stored = tracking.read_offline_run(wandb_dirs[0])
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
    n_rows = sum(len(s["prob"]) for model in results["per_example"].values() for s in model.values())
    assert table_meta["_type"] == "table-file" and table_meta["nrows"] == n_rows
    table = json.loads((wandb_dirs[0] / "files" / table_meta["path"]).read_text())
    assert table["columns"][:3] == ["model", "suite", "index"] and len(table["data"]) == n_rows


def test_wandb_run_of_a_failed_job_is_closed_as_failed(tiny_cfg, wandb_env, tmp_path):
    with pytest.raises(ConfigError):
        job.run(tiny_cfg("logger=wandb", f"benchmark.source={tmp_path / 'nowhere'}"), tmp_path / "run")
    stored = tracking.read_offline_run(tmp_path / "run" / "wandb")
    assert stored["exit_code"] == 1
    assert stored["summary"]["status"] == "failed" and "benchmark.source" in stored["summary"]["error"]


def test_tensorboard_writes_event_files_with_curves_and_final_metrics(tiny_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = job.run(tiny_cfg("logger=tensorboard", "method=ga", "seed=5"), tmp_path)
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"unlearn/loss", "unlearn/forget_nll", "unlearn/learning_rate", "unlearn/grad_norm"} <= set(tags)
    final = acc.Scalars("final/unlearned/forget_prob")[0].value
    assert final == pytest.approx(result["metrics"]["unlearned"]["forget_prob"], rel=1e-6)  # stored as float32


def test_logger_none_starts_nothing(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    tracker = tracking.start(cfg, tmp_path, {"method": "npo"})
    assert isinstance(tracker, tracking.NullTracker) and tracker.callbacks == []
    tracker.finish({"status": "completed", "metrics": {"unlearned": {"forget_prob": 0.5}}})
    assert list(tmp_path.iterdir()) == []


def test_only_the_main_process_tracks(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert isinstance(tracking.start(tiny_cfg("logger=wandb"), tmp_path), tracking.NullTracker)
    assert not (tmp_path / "wandb").exists()


def test_online_mode_needs_a_configured_key(tmp_path):
    netrc = tmp_path / "netrc"
    assert not tracking.wandb_api_key_configured({"NETRC": str(netrc)})
    assert tracking.wandb_api_key_configured({"WANDB_API_KEY": "x" * 40, "NETRC": str(netrc)})
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")
    netrc.chmod(0o600)
    assert tracking.wandb_api_key_configured({"NETRC": str(netrc)})
    assert not tracking.wandb_api_key_configured({"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.org"})


def test_run_name_and_group():
    config = {"seed": 3, "method": {"_target_": "runner.methods.npo.NPO"}, "benchmark": {"name": "tofu"}}
    config |= {"model": {"name": "tiny"}, "coreset": {"name": "random", "ratio": 0.1}}
    config |= {"finetune_attack": {"name": "none"}}
    assert tracking.run_name(config, {}) == "npo-tofu-tiny-random0.1-s3"
    assert tracking.run_name(config, {"method": "simnpo", "model": "llama2-7b-chat"}).startswith("simnpo-tofu-llama2")
    assert tracking.sweep_group({"sweep_name": "coreset_wmdp"}) == "coreset_wmdp"
    assert tracking.sweep_group({}) is None  # not inside a Hydra multirun
    assert tracking.flatten({"a": {"b": 1, "c": [1, 2]}, "d": {}}) == {"a.b": 1, "a.c": [1, 2], "d": {}}


def test_scrub_rules(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    monkeypatch.setenv("MY_SERVICE_PASSWORD", "hunter2-but-longer")
    config = {
        "hub": {"api_key": "abc", "token": "short-but-named", "url": f"https://user:{HF_SECRET}@hf.co/x"},
        "benchmark": {"max_new_tokens": {"forget": 48}, "name": "tofu"},
        "model": {"revision": "a" * 40, "id": "meta-llama/Llama-2-7b-chat-hf"},
        "note": f"key {WANDB_SECRET} and hunter2-but-longer and sk-{'Z' * 30}",
        "blob": "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    }
    clean = secrets.scrub(config)
    assert clean["hub"] == {"api_key": "<redacted>", "token": "<redacted>", "url": "https://user:<redacted>@hf.co/x"}
    assert clean["benchmark"] == config["benchmark"]  # max_new_tokens is not a token
    assert clean["model"] == config["model"]  # a revision hash pins weights: kept
    assert clean["note"] == "key <redacted> and <redacted> and <redacted>"
    assert clean["blob"] == "<redacted>"
    assert secrets.scrub_overrides(["+hub.api_key=abc", "seed=1", f"x={HF_SECRET}"]) == [
        "+hub.api_key=<redacted>",
        "seed=1",
        "x=<redacted>",
    ]


def test_log_lines_are_redacted(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    handler = logging.FileHandler(tmp_path / "job.log")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        secrets.install_log_filter([CONFIG_SECRET])
        logging.getLogger("runner.somewhere").warning("token %s and %s", HF_SECRET, CONFIG_SECRET)
    finally:
        root.removeHandler(handler)
        handler.close()
    text = (tmp_path / "job.log").read_text()
    assert "token <redacted> and <redacted>" in text and HF_SECRET not in text and CONFIG_SECRET not in text
