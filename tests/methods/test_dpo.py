"""DPO from an alternates file (runner/methods/dpo.py): reading the file, the seeded draw, the pairs it trains on,
its errors and defaults."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from runner.components import build
from runner.errors import ConfigError
from runner.methods.base import Method
from runner.methods.dpo import DPO, draw_alternates, read_alternates
from tests.conftest import TOY_FORGET_ROWS, compose_cfg, toy_batch, toy_data, toy_encode


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


ALTERNATES = [  # AltPO's layout: a question on several rows, an extra `answer` key
    {"question": "Who wrote Alpha?", "answer": "Basil Hart", "alternate": "Mona Reed"},
    {"question": "Who wrote Alpha?", "answer": "Basil Hart", "alternate": "Ivo Lund"},
    {"question": "Where was Cyra born?", "alternate": ["Rome", "Kyiv"]},
    {"question": "What genre?", "alternate": "Poems"},
    {"question": " Awards won? ", "alternate": "Two"},  # matched on the stripped text
]


def test_read_alternates_collects_per_question(tmp_path):
    got = read_alternates(write_jsonl(tmp_path / "alt.jsonl", ALTERNATES))
    assert got == {
        "Who wrote Alpha?": ["Mona Reed", "Ivo Lund"],
        "Where was Cyra born?": ["Rome", "Kyiv"],
        "What genre?": ["Poems"],
        "Awards won?": ["Two"],
    }


@pytest.mark.parametrize(
    "row", [{"question": "Q?"}, {"question": "Q?", "alternate": ""}, {"alternate": "A"}, ["Q?", "A"]]
)
def test_a_bad_row_is_one_error_naming_the_key(tmp_path, row):
    path = write_jsonl(tmp_path / "alt.jsonl", [ALTERNATES[0], row])
    with pytest.raises(ConfigError, match="method.alternates") as err:
        DPO(alternates=path)
    assert "line 2" in str(err.value)


def test_draw_is_the_seeded_choice():
    candidates = [["a", "b", "c"], ["d"], ["e", "f"]]
    rng = random.Random(7)
    assert draw_alternates(candidates, 7) == [rng.choice(c) for c in candidates]


def test_pairs_each_question_with_its_drawn_alternate(toy_llama, tmp_path):
    data = toy_data(toy_llama)
    method = DPO(alternates=write_jsonl(tmp_path / "alt.jsonl", ALTERNATES), beta=0.5)
    method.prepare(data)
    candidates = [["Mona Reed", "Ivo Lund"], ["Rome", "Kyiv"], ["Poems"], ["Two"]]
    chosen = draw_alternates(candidates, data.seed)
    for i, answer in enumerate(chosen):
        expected = toy_encode([{"question": TOY_FORGET_ROWS[i]["question"], "answer": answer}])[0]
        assert method.alt_examples[i]["input_ids"] == expected["input_ids"]
        assert method.alt_examples[i]["labels"] == expected["labels"]
    with torch.no_grad():  # at theta_0 the forget term is (2/beta) ln 2: the reference log-probs line up
        got = method.forget_term(toy_llama, toy_batch(data, forget_ids=(2, 3, 1)))
    assert got.item() == pytest.approx(2 / 0.5 * math.log(2), rel=1e-5)


def test_a_question_without_alternate_stops_prepare(toy_llama, tmp_path):
    method = DPO(alternates=write_jsonl(tmp_path / "alt.jsonl", ALTERNATES[:3]))
    with pytest.raises(ConfigError, match="method.alternates.*2 of the 4 forget questions"):
        method.prepare(toy_data(toy_llama))


def test_yaml_defaults_and_a_missing_file():
    cfg = compose_cfg("method=dpo").method
    assert dict(cfg) == {
        "_target_": "runner.methods.dpo.DPO",
        "alternates": None,
        "beta": 0.1,
        "alpha": 1.0,
        "gamma": 1.0,
    }
    with pytest.raises(ConfigError, match="method.alternates.*method=altpo"):
        build(cfg, Method, "method")
    with pytest.raises(ConfigError, match="method.beta"):
        DPO(alternates="unused", beta=0.0)
