"""The DeepSpeed config of one training stage, derived from the stage's trainer settings.

``conf/distributed/*.yaml`` hold only the ZeRO block; batch sizes, accumulation and clipping
come from the trainer settings (the same values the TrainingArguments get, so transformers'
consistency check passes) and bf16 from the run's precision.
"""

from __future__ import annotations

from runner.distributed.ranks import world_size


def build_deepspeed_config(zero: dict, train_cfg, precision: str, n_ranks: int) -> dict:
    """DeepSpeed's config from the stage's trainer settings and the ZeRO block of ``conf/distributed``.

    ``precision`` is the one training really uses (``Strategy.training_precision``). With the
    optimizer offloaded to CPU, DeepSpeed's own AdamW (its CPU Adam) replaces torch's, as
    ZeRO-Offload requires; "auto" lets transformers fill its learning rate, betas and weight
    decay from the trainer.
    """
    micro, accum = int(train_cfg["batch_size"]), int(train_cfg.get("grad_accum", 1) or 1)
    config = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "train_batch_size": micro * accum * n_ranks,
        "gradient_clipping": float(train_cfg["max_grad_norm"]),
        "bf16": {"enabled": precision == "bf16"},
        "zero_optimization": dict(zero),
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if (zero.get("offload_optimizer") or {}).get("device", "none") != "none":
        config["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
        }
    return config


def single_process_equivalent(train_cfg) -> dict:
    """``train_cfg`` as the one-process run with the same global batch (for cache keys shared across world sizes)."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(train_cfg, resolve=True) if not isinstance(train_cfg, dict) else dict(train_cfg)
    if world_size() > 1:
        plain["batch_size"] = int(plain["batch_size"]) * world_size()
    return plain
