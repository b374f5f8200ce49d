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


def test_gradnorm_is_minus_the_mean_per_tensor_norm_of_a_plain_backward():
    model = random_llama(max_position_embeddings=64).eval()
    model.model.layers[0].requires_grad_(False)  # a frozen layer takes part all the same, and stays frozen
    enc = [{"input_ids": [1, 5, 6, 7, 8], "labels": [IGNORE, IGNORE, 6, 7, 8]}]
    got = privacy.gradnorm_scores(model, enc, ["1", "2", "inf"], "fp32")

    for p in model.parameters():
        p.requires_grad_(True)
    ids = torch.tensor([enc[0]["input_ids"]])
    logits = model(input_ids=ids).logits[0, 1:-1]  # the positions predicting tokens 2..4
    loss = F.cross_entropy(logits, ids[0, 2:])
    grads = torch.autograd.grad(loss, list(model.parameters()))
    for key, ord_ in (("1", 1), ("2", 2), ("inf", math.inf)):
        want = -torch.stack([torch.linalg.vector_norm(g, ord=ord_) for g in grads]).mean().item()
        assert got[f"mia_gradnorm_{key}"][0] == pytest.approx(want, rel=1e-4)
    model.model.layers[0].requires_grad_(False)
    privacy.gradnorm_scores(model, enc, ["2"], "fp32")
    assert not any(p.requires_grad for p in model.model.layers[0].parameters())


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
