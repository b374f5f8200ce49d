"""Forget rows, a character-level encode and a fitted tiny model, shared by the coreset tests."""

from __future__ import annotations

import numpy as np
import torch

from runner.data.qa import collate_qa
from runner.scoring import mean_nll
from tests.conftest import random_llama

VOCAB = 50


def _ids(text: str) -> list[int]:
    return [3 + ord(c) % (VOCAB - 3) for c in text]


def encode(rows: list[dict]) -> list[dict]:
    """A character-level stand-in for a benchmark's encode: QA rows score the answer, text rows every token."""
    out = []
    for i, r in enumerate(rows):
        if "text" in r:
            ids = _ids(r["text"])[:24]
            out.append({"input_ids": ids, "labels": list(ids), "index": i})
        else:
            q, a = _ids(r["question"])[:12], _ids(r["answer"])[:12]
            out.append({"input_ids": q + a, "labels": [-100] * len(q) + a, "index": i})
    return out


QA_ROWS = [
    {"question": f"Who wrote book {i}?", "answer": f"Author {i * 7 % 13} wrote it in {1900 + i}"} for i in range(40)
]
TEXT_ROWS = [
    {"text": f"Passage {i} about the pathogen variant {i % 5} and its assay number {i * 3}."} for i in range(40)
]


def fitted_model():
    """A tiny model trained to fit examples 0-2 and never shown examples 3-5."""
    rng = np.random.default_rng(0)
    # six unrelated strings of letters, so fitting three says nothing about the other three
    rows = [
        {"question": f"q{i}", "answer": "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 14))} for i in range(6)
    ]
    encoded = encode(rows)
    model = random_llama()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = collate_qa(encoded[:3], 0)
    for _ in range(80):
        opt.zero_grad()
        mean_nll(model, batch).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model, rows, encoded
