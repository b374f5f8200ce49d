"""Secrets scrubbing: which values are secrets, and that log lines lose them."""

from __future__ import annotations

import logging

from runner.output import secrets

# planted secrets (shared with the tracker tests): none of these may appear in any file a run writes
HF_SECRET = "hf_PlantedTokenAbCdEfGhIjKlMnOpQrStUv123456"
WANDB_SECRET = "0123456789abcdef0123456789abcdef01234567"  # the shape of a W&B API key
CONFIG_SECRET = "PlantedConfigSecret-91827364"


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


def test_secret_values_are_the_long_values_under_credential_names():
    config = {"hub": {"api_key": CONFIG_SECRET, "token": "short"}, "paths": {"cache_dir": "/tmp"}, "list": [{}]}
    assert secrets.secret_values(config) == [CONFIG_SECRET]  # "short" is never searched for in other text
    assert secrets.scrub({"note": f"uses {CONFIG_SECRET}"}, [CONFIG_SECRET]) == {"note": "uses <redacted>"}


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


def test_saved_yaml_files_lose_credential_values(tmp_path):
    saved = tmp_path / "config.yaml"
    saved.write_text(f"service:\n  api_key: {CONFIG_SECRET}\nseed: 0\n- +hub.token=abc\n")
    secrets.scrub_files([saved])
    assert saved.read_text() == "service:\n  api_key: <redacted>\nseed: 0\n- +hub.token=<redacted>\n"
