"""The strategies of conf/distributed: what each option builds, what it checks, and what the trainer asks of it."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from runner import job_kinds, training
from runner.distributed import STRATEGIES, SingleProcess, build_strategy
from runner.distributed.strategies import DDP, ZeRO, ZeRO3Offload
from runner.errors import ConfigError
from tests.conftest import compose_cfg, random_llama

CLASSES = {"ddp": DDP, "zero1": ZeRO, "zero2": ZeRO, "zero3": ZeRO, "zero3_offload": ZeRO3Offload}


@pytest.mark.parametrize("option", ["ddp", "zero1", "zero2", "zero3", "zero3_offload"])
def test_each_option_builds_its_strategy_and_holds_no_trainer_settings(option):
    """Batch sizes, precision and clipping live in the run's config only, never in conf/distributed."""
    cfg = compose_cfg(f"distributed={option}")
    text = json.dumps(OmegaConf.to_container(cfg.distributed).get("zero") or {})
    for duplicated in ("batch", "gradient_accumulation", "clipping", "bf16", "fp16", "lr"):
        assert duplicated not in text
    strategy = build_strategy(cfg.distributed)
    assert type(strategy) is CLASSES[option] and strategy.name == option and strategy.uses_deepspeed
    assert (strategy.nproc_per_node, strategy.timeout_minutes) == (1, 180)


def test_none_is_one_process():
    assert compose_cfg().distributed is None and compose_cfg("distributed=none").distributed is None
    assert compose_cfg("~distributed").get("distributed") is None
    for node in (None, compose_cfg("distributed=none").distributed):
        strategy = build_strategy(node)
        assert type(strategy) is SingleProcess and strategy.name == "none" == STRATEGIES[0]
        assert strategy.deepspeed_config({"batch_size": 1}, "fp32") is None and not strategy.uses_deepspeed


def test_none_refuses_several_processes(monkeypatch):
    with pytest.raises(ConfigCompositionException, match="distributed.nproc_per_node"):
        compose_cfg("distributed.nproc_per_node=2")  # Hydra: the null node has no such key
    with pytest.raises(ConfigError, match="`none` runs one process"):
        job_kinds.validate(compose_cfg("+distributed.nproc_per_node=2"))
    monkeypatch.setenv("WORLD_SIZE", "2")  # started as one of two ranks (torchrun) under distributed=none
    with pytest.raises(ConfigError, match="distributed=ddp"):
        build_strategy(None)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="distributed.nproc_per_node"):
        build_strategy(compose_cfg("distributed=zero2", "distributed.nproc_per_node=0").distributed)
    with pytest.raises(ConfigError, match=r"distributed\.zero\.stage.*ZeRO stage 1 or 2 or 3, not 0"):
        build_strategy(compose_cfg("distributed=zero2", "distributed.zero.stage=0").distributed)
    with pytest.raises(ConfigError, match="distributed.zero.stage"):
        build_strategy(compose_cfg("distributed=ddp", "distributed.zero.stage=2").distributed)
    offload = compose_cfg(
        "distributed=zero3_offload", "~distributed.zero.offload_optimizer", "~distributed.zero.offload_param"
    )
    with pytest.raises(ConfigError, match="offloads nothing"):
        build_strategy(offload.distributed)


def test_method_without_the_strategy_is_refused_by_name():
    with pytest.raises(ConfigError, match="cannot run under distributed=zero3"):
        job_kinds.validate(compose_cfg("method=blur", "distributed=zero3"))
    job_kinds.validate(compose_cfg("method=blur", "distributed=none"))


def test_deepspeed_on_cpu_trains_in_fp32(monkeypatch):
    zero2 = build_strategy(compose_cfg("distributed=zero2").distributed)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert zero2.training_precision("bf16") == "fp32"
    assert zero2.deepspeed_config(compose_cfg().unlearn, "bf16")["bf16"] == {"enabled": False}
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert zero2.training_precision("bf16") == "bf16"
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert SingleProcess().training_precision("bf16") == "bf16"  # one process on CPU: bf16 autocast as before


class _Recording(SingleProcess):
    """One process that notes what the trainer asked of it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def training_precision(self, precision):
        self.calls.append(("precision", precision))
        return "fp32"

    def deepspeed_config(self, train_cfg, precision):
        self.calls.append(("deepspeed_config", precision))

    def before_training(self, model):
        self.calls.append(("before", type(model).__name__))
        return "state"

    def after_training(self, trainer, model, before, gather=True):
        self.calls.append(("after", before, gather))


def test_the_trainer_gets_everything_from_the_strategy_it_is_given(tmp_path):
    model = random_llama()
    rows = [{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}] * 2
    train_cfg = OmegaConf.create(
        {"epochs": 1, "batch_size": 2, "grad_accum": 1, "learning_rate": 1e-3, "lr_scheduler": "constant"}
        | {"warmup_ratio": 0.0, "weight_decay": 0.0, "max_grad_norm": 1.0, "max_steps": 1}
    )
    strategy = _Recording()
    stats = training.train(
        model,
        training.ListDataset(rows),
        training.collate_single(0),
        lambda m, batch: (m(input_ids=batch["input_ids"], labels=batch["labels"]).loss, {}),
        train_cfg,
        seed=0,
        precision="bf16",
        output_dir=tmp_path,
        stage="unlearn",
        strategy=strategy,
    )
    assert stats["steps"] == 1
    assert strategy.calls == [
        ("precision", "bf16"),
        ("deepspeed_config", "fp32"),
        ("before", "LlamaForCausalLM"),
        ("after", "state", True),
    ]
    assert torch.isfinite(torch.tensor(stats["train_loss"]))
