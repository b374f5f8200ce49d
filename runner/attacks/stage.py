"""The attack stage: after unlearning, fine-tune the model as ``finetune_attack`` says (the ILU paper, arXiv 2506.01339).

The job evaluates the benchmark before (row "unlearned") and after (row "attacked") the
attack; the attack reports its own task metric before and after.
"""

from __future__ import annotations

from pathlib import Path

from runner.attacks.base import KEY, AttackContext, FinetuneAttack
from runner.components import build
from runner.data.qa import PromptFormat
from runner.distributed import Strategy
from runner.errors import ConfigError


def check_config(attack_cfg) -> None:
    """At config validation: build the attack (its constructor checks the options) and look for its data."""
    if attack_cfg is not None and "_target_" not in attack_cfg:
        # `finetune_attack=none` with settings laid over it (an experiment's block for its own attack)
        raise ConfigError(
            KEY,
            f"finetune_attack=none runs no attack, but settings for one are given ({', '.join(map(str, attack_cfg))})",
            "choose an attack (finetune_attack=gsm8k|sst2|mrpc|agnews|relearn), or drop those settings",
        )
    attack = build(attack_cfg, FinetuneAttack, KEY)
    if attack is not None:
        attack.check_data()


def attack_inputs(attack_cfg) -> list:
    """The files the attack ``attack_cfg`` reads (runner/inputs.py); none without an attack."""
    attack = build(attack_cfg, FinetuneAttack, KEY)
    return attack.inputs() if attack is not None else []


def run_attack(
    attack_cfg,
    *,
    model,
    tokenizer,
    fmt: PromptFormat,
    bench,
    seed: int,
    precision: str,
    eval_batch_size: int,
    trainable_layers: int | None,
    strategy: Strategy | None,
    output_dir: Path,
    callbacks: list | None = None,
) -> dict:
    """Fine-tune the unlearned ``model`` in place as ``attack_cfg`` (the ``finetune_attack`` node) says.

    Returns results.json's ``attack``. ``seed`` draws the training rows and seeds the trainer;
    ``eval_batch_size`` and ``precision`` are the task scoring's; ``strategy`` the job's.
    """
    ctx = AttackContext(
        model=model,
        tokenizer=tokenizer,
        fmt=fmt,
        bench=bench,
        pad_id=tokenizer.pad_token_id,
        precision=precision,
        eval_batch_size=eval_batch_size,
        trainable_layers=trainable_layers,
        seed=seed,
        strategy=strategy,
    )
    return build(attack_cfg, FinetuneAttack, KEY).run(ctx, Path(output_dir), callbacks)
