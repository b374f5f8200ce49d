"""Every option of every config group composes, and the experiments compose too."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from runner.attacks import ClassificationAttack, FinetuneAttack, Gsm8kAttack, RelearnAttack
from runner.components import build
from runner.coreset import Selector
from runner.coreset.selectors import GradNormSelector, KeywordSelector, LossSelector, ModerateSelector, RandomSelector
from runner.distributed import Strategy
from runner.distributed.strategies import DDP, ZeRO, ZeRO3Offload
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


# every option of the component groups, and the class it builds (None: the option asks for no component)
COMPONENTS = {
    "coreset": (Selector, {"gradnorm": GradNormSelector, "keyword": KeywordSelector, "loss": LossSelector,
                           "moderate": ModerateSelector, "random": RandomSelector, "none": None}),
    "finetune_attack": (FinetuneAttack, {"agnews": ClassificationAttack, "gsm8k": Gsm8kAttack,
                                         "mrpc": ClassificationAttack, "relearn": RelearnAttack,
                                         "sst2": ClassificationAttack, "none": None}),
    "distributed": (Strategy, {"ddp": DDP, "zero1": ZeRO, "zero2": ZeRO, "zero3": ZeRO,
                               "zero3_offload": ZeRO3Offload, "none": None}),
}  # fmt: skip
# what a constructor gets from the job rather than from the config
RUNTIME = {"coreset": {"seed": 5}}


@pytest.mark.parametrize("group,option", [(g, o) for g in COMPONENTS for o in _options(g)])
def test_every_component_option_builds_through_the_one_builder(group, option):
    kind, expected = COMPONENTS[group]
    assert option in expected, f"conf/{group}/{option}.yaml is new: add the class it builds to COMPONENTS"
    built = build(compose_cfg(f"{group}={option}").get(group), kind, group, **RUNTIME.get(group, {}))
    if expected[option] is None:
        assert built is None
    else:
        assert type(built) is expected[option] and isinstance(built, kind)
        assert getattr(built, "name", option) == option  # the option's name, as records and methods know it
