"""lm-eval-harness tasks as utility (runner/lm_eval_utility.py), offline on a local task and the tiny model.

```tests/fixtures/lm_eval/tiny_facts.yaml`` is a six-question multiple-choice task on a local JSON
Lines file; its accuracy is recomputed here from a plain forward pass (lm-eval's rule: the choice
with the highest summed log-likelihood of its tokens after the context wins). A whole unlearning
job with a task is in tests/test_references.py (started from ready models: nothing to fine-tune).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("lm_eval")

from runner import lm_eval_utility  # noqa: E402
from runner.errors import ConfigError  # noqa: E402
from runner.job_kinds import validate  # noqa: E402
from runner.models import load_model  # noqa: E402
from tests.conftest import ROOT, compose_cfg  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "lm_eval"
LOCAL = [f"utility.lm_eval.include_path={FIXTURES}", "utility.lm_eval.include_defaults=false"]
TASK = [line for line in (FIXTURES / "tiny_facts.jsonl").read_text().splitlines() if line]


@pytest.fixture(autouse=True)
def at_project_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the task's data_files path is relative to the project root


def test_unknown_tasks_and_tasks_without_data_fail_at_config_check():
    with pytest.raises(ConfigError, match=r"`utility.lm_eval.tasks`: lm-eval knows no task `hellaswag_typo`"):
        validate(compose_cfg(*LOCAL, "utility.lm_eval.tasks=[hellaswag_typo]"))
    with pytest.raises(ConfigError, match=r"`utility.lm_eval.tasks`: task `missing_data` cannot load its data \("):
        validate(compose_cfg(*LOCAL, "utility.lm_eval.tasks=[missing_data]"))
    with pytest.raises(ConfigError, match=r"`utility.lm_eval.tasks`: names a task twice"):
        validate(compose_cfg(*LOCAL, "utility.lm_eval.tasks=[mmlu,mmlu]"))
    validate(compose_cfg(*LOCAL, "utility.lm_eval.tasks=[tiny_facts,mmlu]"))


def hand_accuracy(model, tokenizer) -> float:
    """lm-eval's multiple-choice accuracy, from scratch: context and context + choice tokenised, the choice scored."""
    right = 0
    for line in TASK:
        row = json.loads(line)
        context = f"Question: {row['question']}\nAnswer:"
        scores = []
        for choice in row["choices"]:
            ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
            whole = tokenizer(context + choice, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), -1)
            scores.append(sum(logp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole))))
        right += int(max(range(len(scores)), key=scores.__getitem__) == row["answer"])
    return right / len(TASK)


def test_a_local_task_and_mmlu_on_the_in_memory_model(shared_cache):
    cfg = compose_cfg(
        "model=tiny",
        *LOCAL,
        "utility.lm_eval.tasks=[tiny_facts,mmlu]",
        "utility.lm_eval.mmlu.subjects=[virology]",
        "utility.lm_eval.mmlu.per_subject=5",
        "eval.batch_size=4",
    )
    model, tokenizer = load_model(cfg.model, shared_cache)
    torch.manual_seed(7)
    expected_draw = torch.rand(3)
    torch.manual_seed(7)
    got = lm_eval_utility.evaluate(model, tokenizer, cfg, "fp32")
    assert torch.equal(torch.rand(3), expected_draw)  # lm-eval's seeding does not leak into the job
    p = hand_accuracy(model, tokenizer)
    assert got["tiny_facts"]["metric"] == "acc" and got["tiny_facts"]["n"] == 6
    assert got["tiny_facts"]["value"] == pytest.approx(p)
    assert got["tiny_facts"]["stderr"] == pytest.approx(math.sqrt(p * (1 - p) / 5))  # lm-eval's mean stderr
    mmlu = got["mmlu"]  # the runner's own scorer: 5 virology questions
    assert mmlu["n"] == 5 and mmlu["stderr"] == pytest.approx(math.sqrt(mmlu["value"] * (1 - mmlu["value"]) / 4))
    assert lm_eval_utility.summary(got) == {
        "lm_eval_tiny_facts": got["tiny_facts"]["value"],
        "lm_eval_tiny_facts_stderr": got["tiny_facts"]["stderr"],
        "lm_eval_mmlu": mmlu["value"],
        "lm_eval_mmlu_stderr": mmlu["stderr"],
    }
