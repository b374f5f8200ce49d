"""The DeepSpeed config comes from the run's trainer settings; conf/distributed holds only ZeRO settings."""

from __future__ import annotations

from runner.distributed.deepspeed_config import build_deepspeed_config, single_process_equivalent
from tests.conftest import TINY, compose_cfg


def test_deepspeed_config_is_derived_from_the_trainer_settings():
    cfg = compose_cfg(*TINY, "distributed=zero3_offload", "unlearn.grad_accum=3", "unlearn.max_grad_norm=0.5")
    zero = dict(cfg.distributed.zero)
    ds = build_deepspeed_config(zero, cfg.unlearn, "bf16", n_ranks=8)
    assert ds["train_micro_batch_size_per_gpu"] == cfg.unlearn.batch_size == 4
    assert ds["gradient_accumulation_steps"] == 3
    assert ds["train_batch_size"] == 4 * 3 * 8
    assert ds["gradient_clipping"] == 0.5
    assert ds["bf16"] == {"enabled": True}
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert ds["optimizer"]["type"] == "AdamW"  # ZeRO-Offload steps with DeepSpeed's CPU Adam
    fp32 = build_deepspeed_config(dict(compose_cfg("distributed=zero2").distributed.zero), cfg.unlearn, "fp32", 2)
    assert fp32["bf16"] == {"enabled": False} and "optimizer" not in fp32  # torch's AdamW, as in one process


def test_single_process_equivalent_multiplies_the_batch_by_the_ranks(monkeypatch):
    train = {"batch_size": 4, "epochs": 1}
    assert single_process_equivalent(train) == train
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert single_process_equivalent(train) == {"batch_size": 8, "epochs": 1}
