"""Secrets scrubbing: which values are secrets, and that log lines lose them."""

from __future__ import annotations

import logging

import pytest

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
        "source": "/data/TofuCopy2024Nov28Forget01Version2",
    }
    clean = secrets.scrub(config)
    assert clean["hub"] == {"api_key": "<redacted>", "token": "<redacted>", "url": "https://user:<redacted>@hf.co/x"}
    assert clean["benchmark"] == config["benchmark"]  # max_new_tokens is not a token
    assert clean["model"] == config["model"]  # a revision hash pins weights: kept
    # the W&B-shaped hex is not in the environment here: looking random is no reason to redact it
    assert clean["note"] == f"key {WANDB_SECRET} and <redacted> and <redacted>"
    assert clean["blob"] == config["blob"] and clean["source"] == config["source"]
    assert secrets.scrub_overrides(["+hub.api_key=abc", "seed=1", f"x={HF_SECRET}"]) == [
        "+hub.api_key=<redacted>",
        "seed=1",
        "x=<redacted>",
    ]


def test_secret_values_are_every_value_under_credential_names_but_paths():
    config = {
        "hub": {"api_key": CONFIG_SECRET, "token": "short", "pin": {"password": 1234}, "auth": True},
        "ssh": {"key": "/tmp"},  # a key file's location, not the key
        "paths": {"cache_dir": "/tmp"},
        "list": [{}],
    }
    assert secrets.secret_values(config) == [CONFIG_SECRET, "short", "1234"]
    assert secrets.scrub({"note": f"uses {CONFIG_SECRET}"}, [CONFIG_SECRET]) == {"note": "uses <redacted>"}
    assert secrets.scrub(config)["hub"]["pin"] == {"password": "<redacted>"}  # a number is a password too


@pytest.mark.parametrize("password", ["Hunter2pass", "pw", "1234", "x-y"])
def test_a_short_value_under_a_credential_name_is_redacted_as_a_whole_word(password):
    line = f"    override_dirname: +db.password={password},logger=wandb,seed=12345,tag={password}x\n"
    clean = secrets.scrub_text(line, [password])
    assert clean == f"    override_dirname: +db.password=<redacted>,logger=wandb,seed=12345,tag={password}x\n"


@pytest.mark.parametrize(
    "text",
    [
        "/data/TofuCopy2024Nov28Forget01Version2",
        "/models/Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z/weights",
        "revision 0123456789abcdef0123456789abcdef01234567",
        "c2VjcmV0LWxvb2tpbmctYnV0LWp1c3QtYS1uYW1lMjAyNA==",
    ],
)
def test_a_string_that_merely_looks_random_is_kept(text):
    assert secrets.scrub_text(text) == text
    assert secrets.scrub({"benchmark": {"source": text}}) == {"benchmark": {"source": text}}


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


def test_a_sweep_point_directory_never_holds_a_credential_value():
    from runner.rundir import short_dirname

    name = short_dirname("+db.password=Hunter2pass,method=npo,seed=1")
    assert name == "method=npo,seed=1,+db.password=redacted"  # choices first (runner/rundir.py)
