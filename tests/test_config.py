"""The config tree (conf/) and its validation (runner/config.py): every option composes and builds; bad input names its key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from runner import job
from runner.components import build
from runner.errors import ConfigError
from runner.methods.base import Method
from tests.conftest import CONF_DIR, compose_cfg

GROUPS = ["model", "method", "benchmark", "coreset", "finetune_attack", "distributed", "logger", "experiment"]


GROUPS.append("decoding")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes(group, option):
    cfg = compose_cfg(f"{group}={option}")
    container = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert container["seed"] == 0
    if group == "method" and option == "none":
        assert cfg.method is None  # an evaluation-only job
    elif group == "method":
        assert cfg.method._target_.startswith("runner.methods.")
    if group == "model":
        assert cfg.model.name == option
        assert cfg.model.trust_remote_code is False
        assert "{question}" in cfg.model.prompt.question


def test_groups_have_the_options_later_work_builds_on():
    for group in ("coreset", "finetune_attack", "distributed", "logger"):
        assert "none" in _options(group)
    assert {"smollm2-135m", "tiny", "llama2-7b-chat", "zephyr-7b-beta", "phi-1.5"} <= set(_options("model"))
    assert {"ga", "graddiff", "npo"} <= set(_options("method"))


def test_default_is_the_embedded_offline_job():
    cfg = compose_cfg()
    assert cfg.model.name == "smollm2-135m" and cfg.model.source == "gguf"
    assert cfg.benchmark.name == "tofu" and cfg.benchmark.source == "local"
    assert cfg.benchmark.forget_split == "forget01"
    assert cfg.method._target_ == "runner.methods.npo.NPO"


def test_paper_experiment_sets_paper_hyperparameters():
    cfg = compose_cfg("experiment=tofu_npo_llama2")
    assert cfg.model.id == "meta-llama/Llama-2-7b-chat-hf"
    assert cfg.unlearn.learning_rate == 1e-5 and cfg.method.beta == 0.1
    assert cfg.benchmark.subset is None and cfg.benchmark.forget_split == "forget10"


def _status(run_dir):
    path = run_dir / "results.json"
    return json.loads(path.read_text())["status"] if path.exists() else None


@pytest.mark.parametrize(
    "override,key",
    [
        ("unlearn.learning_rate=-1e-5", "unlearn.learning_rate"),
        ("unlearn.epochs=0", "unlearn.epochs"),
        ("benchmark.finetune.learning_rate=0", "benchmark.finetune.learning_rate"),
        ("benchmark.forget_split=forget07", "benchmark.forget_split"),
        ("benchmark.forget_split=forget05", "benchmark.source"),  # not shipped offline
        ("precision=fp8", "precision"),
    ],
)
def test_bad_input_names_the_key_and_leaves_no_completed_result(tiny_cfg, tmp_path, override, key):
    with pytest.raises(ConfigError) as err:
        job.run(tiny_cfg(override), tmp_path)
    assert f"`{key}`" in str(err.value) and "Fix:" in str(err.value)
    assert _status(tmp_path) in (None, "failed")


def test_every_experiment_and_method_instantiates():
    from pathlib import Path

    from tests.conftest import CONF_DIR

    evaluation_only = {"reasoning_smoke_tiny", "reflection_demo_smollm2", "cyclicreflex_math500", "none"}
    for exp in sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml")):
        method = build(compose_cfg(f"experiment={exp}").method, Method, "method")
        assert (method is None) == (exp in evaluation_only), exp
    for name in sorted(p.stem for p in (Path(CONF_DIR) / "method").glob("*.yaml")):
        assert (build(compose_cfg(f"method={name}").method, Method, "method") is None) == (name in evaluation_only), (
            name
        )
