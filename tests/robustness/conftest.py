"""The tiny model and a probe context around it, for the robustness battery's tests."""

from __future__ import annotations

import pytest

from runner.robustness import ProbeContext
from tests.conftest import load_tiny, tiny_parts

ROWS = [
    {"question": "Where was Basil Mahfouz born?", "answer": "Basil Mahfouz was born in Kuwait City, Kuwait."},
    {
        "question": "What genre does Nikolai Abilov write?",
        "answer": "Nikolai Abilov writes in the African American genre.",
    },
    {
        "question": "Who are Hsiao Yun-Hwa's parents?",
        "answer": "Her father was a civil engineer and her mother was unemployed.",
    },
    {
        "question": "Which award did Jaime Vasquez win?",
        "answer": "Jaime Vasquez won the Edgar Allan Poe Award for true crime.",
    },
    {
        "question": "What is Chukwu Akabueze's profession?",
        "answer": "Chukwu Akabueze is a celebrated author of biographies.",
    },
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(cfg, model, tokenizer) of the tiny test model in eval mode, in a cache of the module's own."""
    cfg, model, tokenizer = load_tiny(tmp_path_factory.mktemp("cache"))
    return cfg, model.eval(), tokenizer


def probe(tiny, rows=ROWS, model=None, seed: int = 0) -> ProbeContext:
    return ProbeContext(
        **tiny_parts(tiny, model),
        rows=rows,
        precision="fp32",
        batch_size=8,
        seed=seed,
        max_new_tokens=8,
        max_length=96,
    )
