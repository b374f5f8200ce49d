"""The attack contract's shared part: option checks, seeded draws, and LoRA tuning merged into plain weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from runner import job_kinds
from runner.errors import ConfigError
from runner.models import load_model
from tests.attacks.conftest import attack_of, context
from tests.conftest import compose_cfg


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["finetune_attack=gsm8k", "finetune_attack.tuning=qlora"], "finetune_attack.tuning"),
        (["finetune_attack=relearn", "finetune_attack.train.learning_rate=0"], "finetune_attack.train.learning_rate"),
        (["finetune_attack=mrpc", "finetune_attack.examples=0"], "finetune_attack.examples"),
        (["finetune_attack=relearn", "finetune_attack.train.max_steps=0"], "finetune_attack.train.max_steps"),
        (["finetune_attack=gsm8k", "finetune_attack.max_new_tokens=0"], "finetune_attack.max_new_tokens"),
        (["finetune_attack=relearn", "+finetune_attack.colour=red"], "colour"),  # an unknown option
    ],
)
def test_bad_attack_options_are_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        job_kinds.validate(compose_cfg(*overrides))


def test_training_rows_are_drawn_with_the_jobs_seed(tiny):
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(30)]
    gsm = attack_of("gsm8k", "finetune_attack.examples=5")
    first = gsm.draw(context(tiny, seed=1), rows)
    assert len(first) == 5 and gsm.draw(context(tiny, seed=1), rows) == first
    assert gsm.draw(context(tiny, seed=2), rows) != first


def test_lora_attack_merges_into_plain_weights(tiny):
    cfg, _, tokenizer = tiny
    model, _ = load_model(cfg.model, Path(cfg.paths.cache_dir))  # a copy of its own: this test changes it
    names = [n for n, _ in model.named_parameters()]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sst2 = attack_of(
        "sst2", "finetune_attack.tuning=lora", "finetune_attack.examples=8", "finetune_attack.eval_examples=4",
        "finetune_attack.train.max_steps=3", "finetune_attack.train.learning_rate=1e-2",
    )  # fmt: skip
    result = sst2.run(context(tiny, model), Path(cfg.paths.cache_dir) / "attack")
    assert result["training"]["steps"] == 3 and result["n_train"] == 8 and result["tuning"] == "lora"
    assert [n for n, _ in model.named_parameters()] == names  # no LoRA layers left
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.endswith("proj.weight") for n in changed)  # only the adapted Linear weights moved
