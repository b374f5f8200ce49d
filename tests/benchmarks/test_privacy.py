"""The privacy half of an evaluation (runner/benchmarks/privacy.py): GradNorm against a plain backward,
PrivLeak's reference, the Reference attack from the retain model's record."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from runner.benchmarks import privacy
from runner.data.qa import IGNORE
from tests.conftest import random_llama

# rows of different lengths (so a vmap call pads them), a QA row and a whole-text row (MUSE's kind)
GRADNORM_ROWS = [
    {"input_ids": [1, 5, 6, 7, 8], "labels": [IGNORE, IGNORE, 6, 7, 8]},
    {"input_ids": [1, 9, 10, 11, 12, 13, 14, 15], "labels": [IGNORE] * 4 + [12, 13, 14, 15]},
    {"input_ids": [1, 20, 21], "labels": [IGNORE, 20, 21]},
    {"input_ids": [1, 30, 31, 32, 33, 34], "labels": [IGNORE, IGNORE, IGNORE, IGNORE, 33, 34]},
    {"input_ids": [2, 40, 41, 42], "labels": [IGNORE, IGNORE, 41, 42]},
]


def _plain_gradnorms(model, row):
    """The definition, written out: one row, a plain forward, loss.backward(), the mean per-tensor p-norm per p."""
    model.zero_grad(set_to_none=True)
    ids = torch.tensor([row["input_ids"]])
    labels = torch.tensor(row["labels"][1:])
    logits = model(input_ids=ids).logits[0, :-1]
    scored = labels != IGNORE
    F.cross_entropy(logits[scored], labels[scored]).backward()
    grads = [p.grad for p in model.parameters()]
    return {
        key: -torch.stack([torch.linalg.vector_norm(g, ord=ord_) for g in grads]).mean().item()
        for key, ord_ in (("1", 1), ("2", 2), ("inf", math.inf))
    }


def test_gradnorm_equals_a_plain_backward_per_row():
    model = random_llama(max_position_embeddings=64).eval()
    model.model.layers[0].requires_grad_(False)  # a frozen layer takes part all the same, and stays frozen
    # 3 rows per vmap call: a padded call of 3 and a call of 2
    got = privacy.gradnorm_scores(model, GRADNORM_ROWS, ["1", "2", "inf"], "fp32", rows_per_call=3)
    assert not any(p.requires_grad for p in model.model.layers[0].parameters())
    assert all(p.grad is None for p in model.parameters())  # the model's .grad buffers are left alone

    for p in model.parameters():
        p.requires_grad_(True)
    want = [_plain_gradnorms(model, row) for row in GRADNORM_ROWS]
    for key in ("1", "2", "inf"):
        assert got[f"mia_gradnorm_{key}"] == pytest.approx([w[key] for w in want], rel=1e-5, abs=1e-7)


def _evaluation(forget_loss, holdout_loss, min_k_auc):
    per = {
        "forget": {"mia_loss": forget_loss, "exact_memorization": [1.0, 0.5], "extraction_strength": [1.0, 0.25]},
        "holdout": {"mia_loss": holdout_loss},
    }
    return {"suites": {"mia": {"min_k": min_k_auc}}, "per_example": per}


def test_privleak_against_the_retain_model_and_the_reference_attack():
    retain = _evaluation([2.0, 2.0], [2.0, 2.0], 0.6)
    model = _evaluation([1.0, 3.0], [2.5, 2.1], 0.9)
    got = privacy.summarize(model, {"retain": retain})
    assert got["privleak"] == pytest.approx((0.1 - 0.4) / 0.4 * 100)
    # Reference: model LOSS - retain LOSS = forget (-1, 1), holdout (0.5, 0.1): holdout beats -1 twice, ties never
    assert got["mia_reference"] == pytest.approx(2 / 4)
    assert got["exact_memorization"] == 0.75 and got["extraction_strength"] == 0.625
    assert model["suites"]["mia"]["privleak_reference"] == "retain model"


def test_privleak_without_a_retain_model_uses_half_and_says_so(caplog):
    model = _evaluation([1.0], [2.0], 0.9)
    got = privacy.summarize(model, {})
    assert got["privleak"] == pytest.approx((0.1 - 0.5) / 0.5 * 100)
    assert "no retain model" in model["suites"]["mia"]["privleak_reference"]
    assert "reference AUC is 0.5" in caplog.text
    assert "mia_reference" not in got
