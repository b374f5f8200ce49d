"""Classification attacks (SST-2, MRPC, AG News): their data found at validation, accuracy by label scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runner import job_kinds
from runner.attacks import ClassificationAttack
from runner.data import classification
from runner.data.qa import encode_qa
from runner.errors import ConfigError
from tests.attacks.conftest import attack_of, context
from tests.conftest import compose_cfg


def test_every_classification_option_builds_its_task():
    for task in ("sst2", "mrpc", "agnews"):
        attack = attack_of(task)
        assert type(attack) is ClassificationAttack and attack.task == task and attack.metric == f"{task}_accuracy"


def test_a_missing_split_is_caught_when_the_config_is_validated(tmp_path):
    (tmp_path / "nyu-mll" / "glue" / "sst2").mkdir(parents=True)
    (tmp_path / "nyu-mll" / "glue" / "sst2" / "train.jsonl").write_text('{"sentence": "x", "label": 1}\n')
    with pytest.raises(ConfigError, match="finetune_attack.source.*validation"):
        job_kinds.validate(compose_cfg("finetune_attack=sst2", f"finetune_attack.source={tmp_path}"))
    with pytest.raises(ConfigError, match="finetune_attack.task"):
        job_kinds.validate(compose_cfg("finetune_attack=sst2", "finetune_attack.task=imdb"))


def test_label_scoring_accuracy_matches_a_hand_computation(tiny):
    """Accuracy = mean over rows of [argmax_label log P(label word + EOS | prompt) == gold], here from raw logits."""
    ctx = context(tiny)
    agnews = attack_of("agnews", "finetune_attack.eval_examples=8")
    rows = agnews._rows("test")
    correct = 0
    with torch.no_grad():
        for r in rows:
            logps = []
            for word in classification.TASKS["agnews"].labels:
                e = encode_qa(ctx.tokenizer, ctx.fmt, r["question"], word, 256)
                ids = torch.tensor([e["input_ids"]])
                logp = torch.log_softmax(ctx.model(ids).logits[0, :-1].double(), dim=-1)
                targets = torch.tensor(e["labels"][1:])
                scored = targets != -100
                logps.append(logp[scored.nonzero()[:, 0], targets[scored]].sum().item())
            correct += int(np.argmax(logps) == r["label"])
    assert agnews.task_score(ctx) == pytest.approx(correct / len(rows))
