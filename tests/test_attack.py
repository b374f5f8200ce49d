"""Fine-tuning attacks: data and metrics by hand, LoRA merging, and the relearning attack end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from runner import attack, config, job
from runner.data import classification, gsm8k
from runner.data.qa import PromptFormat, encode_qa
from runner.errors import ConfigError
from runner.models import load_model
from tests.conftest import ROOT, compose_cfg

FIXTURES = str(ROOT / "tests" / "fixtures" / "hub")


def test_gsm8k_final_number_and_exact_match():
    assert gsm8k.final_number("She pays 3 * 1,000 = 3,000 dollars.\n#### 3,000") == "3000"
    assert gsm8k.final_number("so 4 + 5 = 9 and then 9 - 2 = 7.") == "7"  # no ####: the last number
    assert gsm8k.final_number("#### -12.5 apples") == "-12.5"
    assert gsm8k.final_number("no digits here") is None
    assert gsm8k.exact_match("... so the answer is 18.0", "16 - 3 - 4 = 9 ... 9 * 2 = 18\n#### 18")
    assert not gsm8k.exact_match("#### 17", "#### 18")
    train, test = gsm8k.load("train"), gsm8k.load("test")
    assert (len(train), len(test)) == (7473, 1319) and all("####" in r["answer"] for r in test[:50])


def test_classification_fixtures_have_the_hub_schemas():
    sst2 = classification.load_task_rows("sst2", FIXTURES, "nyu-mll/glue", "sst2", "validation", "k")
    assert len(sst2) == 8 and {r["answer"] for r in sst2} == {"negative", "positive"}
    assert sst2[0]["answer"] == ("positive" if sst2[0]["label"] == 1 else "negative")
    mrpc = classification.load_task_rows("mrpc", FIXTURES, "nyu-mll/glue", "mrpc", "train", "k")
    assert len(mrpc) == 16 and "Sentence 2:" in mrpc[0]["question"] and {r["answer"] for r in mrpc} == {"yes", "no"}
    news = classification.load_task_rows("agnews", FIXTURES, "fancyzhx/ag_news", "default", "test", "k")
    assert [r["label"] for r in news] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_bad_attack_data_and_options_are_config_errors(tmp_path):
    bad = tmp_path / "nyu-mll" / "glue" / "sst2"
    bad.mkdir(parents=True)
    (bad / "test.jsonl").write_text('{"sentence": "hidden", "label": -1, "idx": 0}\n')
    with pytest.raises(ConfigError, match="label -1"):
        classification.load_task_rows("sst2", str(tmp_path), "nyu-mll/glue", "sst2", "test", "finetune_attack.source")
    (bad / "train.jsonl").write_text('{"sentence": "no label"}\n')
    with pytest.raises(ConfigError, match="column `label`"):
        classification.load_task_rows("sst2", str(tmp_path), "nyu-mll/glue", "sst2", "train", "finetune_attack.source")
    # a missing split is caught when the config is validated, before anything trains
    with pytest.raises(ConfigError, match="finetune_attack.source.*validation"):
        config.validate(compose_cfg("finetune_attack=sst2", f"finetune_attack.source={tmp_path}"))
    with pytest.raises(ConfigError, match="finetune_attack.tuning"):
        config.validate(compose_cfg("finetune_attack=gsm8k", "finetune_attack.tuning=qlora"))
    with pytest.raises(ConfigError, match="finetune_attack.train.learning_rate"):
        config.validate(compose_cfg("finetune_attack=relearn", "finetune_attack.train.learning_rate=0"))
    with pytest.raises(ConfigError, match="finetune_attack.examples"):
        config.validate(compose_cfg("finetune_attack=mrpc", "finetune_attack.examples=0"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = compose_cfg("experiment=tofu_smoke_tiny", f"paths.cache_dir={tmp_path_factory.mktemp('cache')}")
    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir))
    return cfg, model, tokenizer


def _ctx(tiny, model=None):
    cfg, m, tokenizer = tiny
    return attack.AttackContext(
        model=model or m,
        tokenizer=tokenizer,
        fmt=PromptFormat.from_cfg(cfg.model.prompt),
        bench=None,
        pad_id=tokenizer.pad_token_id,
        precision="fp32",
        eval_batch_size=8,
        trainable_layers=None,
    )


def _attack(name: str, *overrides: str):
    source = [f"finetune_attack.source={FIXTURES}"] if name in classification.TASKS else []
    cfg = compose_cfg(f"finetune_attack={name}", *source, *overrides)
    return attack.build_attack(cfg.finetune_attack)


def test_label_scoring_accuracy_matches_a_hand_computation(tiny):
    """Accuracy = mean over rows of [argmax_label log P(label word + EOS | prompt) == gold], here from raw logits."""
    ctx = _ctx(tiny)
    agnews = _attack("agnews", "finetune_attack.eval_examples=8")
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


def test_lora_attack_merges_into_plain_weights(tiny):
    cfg, _, tokenizer = tiny
    model, _ = load_model(cfg.model, Path(cfg.paths.cache_dir))  # a copy of its own: this test changes it
    names = [n for n, _ in model.named_parameters()]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sst2 = _attack(
        "sst2", "finetune_attack.tuning=lora", "finetune_attack.examples=8", "finetune_attack.eval_examples=4",
        "finetune_attack.train.max_steps=3", "finetune_attack.train.learning_rate=1e-2",
    )  # fmt: skip
    result = sst2.run(_ctx(tiny, model), Path(cfg.paths.cache_dir) / "attack")
    assert result["training"]["steps"] == 3 and result["n_train"] == 8 and result["tuning"] == "lora"
    assert [n for n, _ in model.named_parameters()] == names  # no LoRA layers left
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.endswith("proj.weight") for n in changed)  # only the adapted Linear weights moved


def test_gsm8k_attack_trains_and_scores_held_out_questions(tiny):
    cfg, _, _ = tiny
    model, _ = load_model(cfg.model, Path(cfg.paths.cache_dir))
    gsm = _attack(
        "gsm8k", "finetune_attack.examples=4", "finetune_attack.eval_examples=2", "finetune_attack.max_new_tokens=4",
        "finetune_attack.train.max_steps=1", "finetune_attack.max_length=64",
    )  # fmt: skip
    result = gsm.run(_ctx(tiny, model), Path(cfg.paths.cache_dir) / "gsm")
    assert result["task_metric"] == "gsm8k_exact_match" and result["training"]["steps"] == 1
    assert result["task_before"] in (0.0, 0.5, 1.0) and result["task_after"] in (0.0, 0.5, 1.0)


def test_relearning_brings_forgotten_answers_back(tiny_cfg, tmp_path):
    """GA unlearns the tiny model's forget set; relearning 4 of its 8 rows raises the forget Probability again."""
    result = job.run(
        tiny_cfg(
            "method=ga", "seed=11", "finetune_attack=relearn", "finetune_attack.examples=4",
            "finetune_attack.train.epochs=10", "finetune_attack.train.learning_rate=1e-3",
        ),
        tmp_path,
    )  # fmt: skip
    assert result["status"] == "completed"
    metrics = result["metrics"]
    assert list(metrics) == ["target", "retain", "unlearned", "attacked"]
    before, after = metrics["unlearned"]["forget_prob"], metrics["attacked"]["forget_prob"]
    assert before < 0.1 * metrics["target"]["forget_prob"]  # GA did unlearn
    assert after > 100 * before and after - before > 0.005, (before, after)
    rec = result["attack"]
    assert rec["name"] == "relearn" and rec["n_train"] == 4 and rec["training"]["steps"] == 10
    # the 4 forget rows that were not relearned come back too
    assert rec["task_metric"] == "relearn_heldout_prob" and rec["task_after"] > 10 * rec["task_before"]
    assert "attacked" in result["per_example"] and result["timings"]["attack"] > 0
