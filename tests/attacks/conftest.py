"""The tiny model and an attack context around it, for the attack tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.attacks import AttackContext, FinetuneAttack
from runner.components import build
from runner.data import classification
from runner.data.qa import PromptFormat
from runner.models import load_model
from tests.conftest import ROOT, compose_cfg

FIXTURES = str(ROOT / "tests" / "fixtures" / "hub")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(cfg, model, tokenizer) of the tiny test model, in a cache of the module's own."""
    cfg = compose_cfg("experiment=tofu_smoke_tiny", f"paths.cache_dir={tmp_path_factory.mktemp('cache')}")
    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir))
    return cfg, model, tokenizer


def context(tiny, model=None, seed: int = 0) -> AttackContext:
    cfg, m, tokenizer = tiny
    return AttackContext(
        model=model or m,
        tokenizer=tokenizer,
        fmt=PromptFormat.from_cfg(cfg.model.prompt),
        bench=None,
        pad_id=tokenizer.pad_token_id,
        precision="fp32",
        eval_batch_size=8,
        trainable_layers=None,
        seed=seed,
    )


def attack_of(name: str, *overrides: str) -> FinetuneAttack:
    """The attack of ``conf/finetune_attack/<name>.yaml`` (classification data from the test fixtures)."""
    source = [f"finetune_attack.source={FIXTURES}"] if name in classification.TASKS else []
    cfg = compose_cfg(f"finetune_attack={name}", *source, *overrides)
    return build(cfg.finetune_attack, FinetuneAttack, "finetune_attack")
