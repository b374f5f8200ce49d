"""IdkDPO (runner/methods/idkdpo.py): the DPO loss by hand, the refusals, its defaults."""

from __future__ import annotations

import math

import pytest
import torch

from runner.data.qa import IGNORE, collate_qa
from runner.methods.dpo import dpo_forget_loss as idkdpo_forget_loss
from runner.methods.dpo import stack_batches
from runner.methods.idkdpo import read_refusals
from tests.conftest import TOY_FORGET_ROWS, compose_cfg, method_from_yaml, toy_batch, toy_data, toy_encode


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_idkdpo_at_reference_is_2_ln2_over_beta(beta):
    logp_idk, logp = f64([-5.0, -9.5]), f64([-20.0, -12.0])
    got = idkdpo_forget_loss(logp_idk, logp_idk.clone(), logp, logp.clone(), beta)
    assert got.item() == pytest.approx(2 / beta * math.log(2), rel=1e-12)


def test_idkdpo_matches_formula():
    logp_idk, logp_idk_ref = [-5.0, -8.0], [-6.0, -7.0]
    logp, logp_ref = [-20.0, -12.0], [-18.0, -15.0]
    # margins: (1) - (-2) = 3 and (-1) - (3) = -4; beta = 0.1
    expected = -(2 / 0.1) * (log_sigmoid(0.3) + log_sigmoid(-0.4)) / 2
    assert expected == pytest.approx(10 * (math.log1p(math.exp(-0.3)) + math.log1p(math.exp(0.4))))
    got = idkdpo_forget_loss(f64(logp_idk), f64(logp_idk_ref), f64(logp), f64(logp_ref), 0.1)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_stack_batches_pads_to_the_wider():
    a = collate_qa([{"input_ids": [1, 5, 6], "labels": [IGNORE, 5, 6]}], 0)
    b = collate_qa([{"input_ids": [1, 7, 8, 9, 2], "labels": [IGNORE, IGNORE, 8, 9, 2]}], 0)
    both = stack_batches(a, b, 0)
    assert both["input_ids"].tolist() == [[1, 5, 6, 0, 0], [1, 7, 8, 9, 2]]
    assert both["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert both["labels"].tolist() == [[IGNORE, 5, 6, IGNORE, IGNORE], [IGNORE, IGNORE, 8, 9, 2]]


def test_refusals_are_plain_lines():
    refusals = read_refusals()
    assert len(refusals) > 10 and all(r and not r.startswith(("{", '"')) for r in refusals)


def test_idkdpo_pairs_refusals_by_seed_and_index(toy_llama):
    data = toy_data(toy_llama)
    first, second = method_from_yaml("idkdpo"), method_from_yaml("idkdpo")
    first.prepare(data)
    second.prepare(data)
    # the answer of each pair is one of the refusals (as toy_encode sees it)
    refusal_answers = {tuple(toy_encode([{"question": "", "answer": r}])[0]["input_ids"][1:]) for r in read_refusals()}
    assert sorted(first.alt_examples) == [0, 1, 2, 3]
    for i, example in first.alt_examples.items():
        assert example["index"] == i
        assert example["input_ids"] == second.alt_examples[i]["input_ids"]  # same seed, same refusals
        n_prompt = example["labels"].count(IGNORE)
        # the refusal follows the forget example's own question
        assert example["input_ids"][:n_prompt] == toy_encode([TOY_FORGET_ROWS[i]])[0]["input_ids"][:n_prompt]
        assert tuple(example["input_ids"][n_prompt:]) in refusal_answers
    # at theta_0 (nothing trained yet) the forget term is (2/beta) ln 2: the reference log-probs line up
    with torch.no_grad():
        got = first.forget_term(toy_llama, toy_batch(data, forget_ids=(2, 3, 1)))
    assert got.item() == pytest.approx(2 / first.beta * math.log(2), rel=1e-5)


def test_idkdpo_needs_forget_rows(toy_llama):
    data = toy_data(toy_llama)
    data.forget_rows = None
    with pytest.raises(ValueError, match="forget_rows"):
        method_from_yaml("idkdpo").prepare(data)


def test_yaml_defaults():
    idkdpo = compose_cfg("method=idkdpo").method
    assert idkdpo.beta == 0.1 and idkdpo.alpha == 1.0
