"""The tiny model and a probe context around it, for the robustness battery's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.data.qa import PromptFormat
from runner.models import load_model
from runner.robustness import ProbeContext
from tests.conftest import compose_cfg

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
    """(cfg, model, tokenizer) of the tiny test model, in a cache of the module's own."""
    cfg = compose_cfg("experiment=tofu_smoke_tiny", f"paths.cache_dir={tmp_path_factory.mktemp('cache')}")
    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir))
    return cfg, model.eval(), tokenizer


def probe(tiny, rows=ROWS, model=None, seed: int = 0) -> ProbeContext:
    cfg, m, tokenizer = tiny
    return ProbeContext(
        model=model or m,
        tokenizer=tokenizer,
        fmt=PromptFormat.from_cfg(cfg.model.prompt),
        rows=rows,
        precision="fp32",
        batch_size=8,
        seed=seed,
        max_new_tokens=8,
        max_length=96,
    )
