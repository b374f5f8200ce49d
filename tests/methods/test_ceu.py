"""CE-U (runner/methods/ceu.py): the skipped first answer tokens, the loss and its gradient by hand, the loss of the
method against the plain transformers forward, its defaults and option check."""

from __future__ import annotations

import math

import pytest
import torch

from runner.data.qa import IGNORE
from runner.errors import ConfigError
from runner.methods.ceu import CEU, ceu_loss, ceu_target, drop_first_answer_tokens
from tests.conftest import compose_cfg, toy_batch, toy_data

I = IGNORE  # noqa: E741


def test_drop_first_answer_tokens():
    labels = torch.tensor([[I, I, 5, 6, 7], [I, 8, 9, I, I]])
    assert drop_first_answer_tokens(labels, 1).tolist() == [[I, I, I, 6, 7], [I, I, 9, I, I]]
    assert drop_first_answer_tokens(labels, 2).tolist() == [[I, I, I, I, 7], [I, I, I, I, I]]
    assert drop_first_answer_tokens(labels, 0).tolist() == labels.tolist()


def test_ceu_loss_and_gradient_by_hand():
    # row 1: p = (1, 2, 3)/6, gold 2 -> target (1, 2, 0)/3; row 2: p = (1, 1, 2)/4, gold 0 -> target (0, 1, 2)/3
    logits = torch.tensor([[0.0, math.log(2), math.log(3)], [0.0, 0.0, math.log(2)]], dtype=torch.float64)
    logits.requires_grad_()
    targets = torch.tensor([2, 0])
    expected_target = [[1 / 3, 2 / 3, 0.0], [0.0, 1 / 3, 2 / 3]]
    torch.testing.assert_close(ceu_target(logits, targets), torch.tensor(expected_target, dtype=torch.float64))
    row1 = -(1 / 3 * math.log(1 / 6) + 2 / 3 * math.log(2 / 6))
    row2 = -(1 / 3 * math.log(1 / 4) + 2 / 3 * math.log(2 / 4))
    loss = ceu_loss(logits, targets)
    assert loss.item() == pytest.approx((row1 + row2) / 2, rel=1e-12)
    loss.backward()
    # d/dz = (p - target) / N, with no gradient through the (detached) target
    expected_grad = [
        [(1 / 6 - 1 / 3) / 2, (2 / 6 - 2 / 3) / 2, (3 / 6) / 2],
        [(1 / 4) / 2, (1 / 4 - 1 / 3) / 2, (2 / 4 - 2 / 3) / 2],
    ]
    torch.testing.assert_close(logits.grad, torch.tensor(expected_grad, dtype=torch.float64))


def test_ceu_loss_of_no_token_is_zero_with_a_graph():
    logits = torch.zeros(0, 5, requires_grad=True)
    loss = ceu_loss(logits, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0 and loss.requires_grad


def test_method_matches_the_plain_forward(toy_llama):
    """The method's loss equals the formula on the full logits of ``model(**batch)``, first answer token skipped."""
    data = toy_data(toy_llama)
    batch = toy_batch(data)
    forget = batch["forget"]
    with torch.no_grad():
        got, terms = CEU(1).loss(toy_llama, batch)
        logits = toy_llama(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits[:, :-1]
    labels = drop_first_answer_tokens(forget["labels"], 1)[:, 1:]
    mask = labels != IGNORE
    assert mask.sum() < (forget["labels"] != IGNORE).sum()  # tokens were skipped
    expected = ceu_loss(logits[mask].double(), labels[mask])
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms == {"ceu_forget": got.item()}
    with torch.no_grad():  # every answer token skipped: nothing to push
        assert CEU(100).loss(toy_llama, batch)[0].item() == 0.0


def test_yaml_defaults_and_option_check():
    assert dict(compose_cfg("method=ceu").method) == {
        "_target_": "runner.methods.ceu.CEU",
        "ignore_first_n_answer_tokens": 1,
    }
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="method.ignore_first_n_answer_tokens"):
            CEU(bad)
