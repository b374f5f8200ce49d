"""The tiny model and an attack context around it, for the attack tests."""

from __future__ import annotations

import pytest

from runner.attacks import AttackContext, FinetuneAttack
from runner.components import build
from runner.data import classification
from tests.conftest import ROOT, compose_cfg, load_tiny, tiny_parts

FIXTURES = str(ROOT / "tests" / "fixtures" / "hub")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(cfg, model, tokenizer) of the tiny test model, in a cache of the module's own."""
    return load_tiny(tmp_path_factory.mktemp("cache"))


def context(tiny, model=None, seed: int = 0) -> AttackContext:
    return AttackContext(
        **tiny_parts(tiny, model),
        bench=None,
        pad_id=tiny[2].pad_token_id,
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
