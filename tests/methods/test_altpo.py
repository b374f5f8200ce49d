"""AltPO (runner/methods/altpo.py): the generation prompts, the cleaning of a reply, the content-addressed cache of
the alternates (a second run generates nothing; other weights generate anew), the pairs it trains on."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from runner.data.qa import PromptFormat, encode_qa
from runner.errors import ConfigError
from runner.methods.altpo import (
    INSTRUCTION,
    REPLY_START,
    AltPO,
    alternate_prompts,
    clean_alternate,
    weights_fingerprint,
)
from runner.methods.base import UnlearnData
from runner.methods.dpo import draw_alternates
from tests.conftest import TOY_FORGET_ROWS, TOY_RETAIN_ROWS, compose_cfg, random_llama

FMT = PromptFormat(question="<user>{question}</user>\n")


@pytest.fixture(scope="module")
def tiny(shared_cache):
    from runner.models import load_model

    return load_model(compose_cfg("model=tiny").model, shared_cache)


def tiny_data(model, tokenizer, cache_dir) -> UnlearnData:
    def encode(rows):
        return [{**encode_qa(tokenizer, FMT, r["question"], r["answer"], 64), "index": i} for i, r in enumerate(rows)]

    return UnlearnData(
        model=model,
        forget=encode(TOY_FORGET_ROWS),
        retain=encode(TOY_RETAIN_ROWS),
        encode=encode,
        pad_id=tokenizer.pad_token_id,
        eval_batch_size=4,
        precision="fp32",
        seed=5,
        forget_rows=TOY_FORGET_ROWS,
        tokenizer=tokenizer,
        fmt=FMT,
        cache_dir=cache_dir,
        model_identity={"tiny": "test"},
    )


def test_clean_alternate_cuts_at_the_first_stop():
    assert clean_alternate(" Mona Reed wrote it.\nQuestion: who else?") == "Mona Reed wrote it."
    assert clean_alternate("Rome. Q: and") == "Rome."
    assert clean_alternate("  \n") == ""


def test_prompts_show_question_answer_and_instruction_in_the_model_format(tiny):
    _, tok = tiny
    prompts = alternate_prompts(tok, FMT, TOY_FORGET_ROWS[:2])
    text = tok.decode(prompts[0])
    row = TOY_FORGET_ROWS[0]
    expected = f"<user>Question: {row['question']}\nAnswer: {row['answer']}\n{INSTRUCTION}</user>\n{REPLY_START}"
    assert text == expected


def test_weights_fingerprint_sees_a_changed_weight():
    a, b = random_llama(), random_llama()
    assert weights_fingerprint(a) == weights_fingerprint(b)
    with torch.no_grad():
        b.model.layers[1].mlp.down_proj.weight[0, 0] += 1e-3
    assert weights_fingerprint(a) != weights_fingerprint(b)


def test_alternates_are_generated_once_and_cached(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    data = tiny_data(model, tok, tmp_path)
    sampled = []
    real = AltPO._sample

    def counting(self, data, prompts):
        out = real(self, data, prompts)
        sampled.append(out)
        return out

    monkeypatch.setattr(AltPO, "_sample", counting)
    first = AltPO(samples=2, max_new_tokens=6, batch_size=2)
    first.prepare(data)
    assert len(sampled) == 1 and [len(r) for r in sampled[0]] == [2] * 4  # two samples per question
    entries = list((tmp_path / "altpo_alternates").iterdir())
    assert not [e for e in entries if ".tmp-" in e.name]  # renamed into place, no temporary left
    entries = [e for e in entries if not e.name.startswith(".")]  # (the lock file stays)
    assert len(entries) == 1
    stored = json.loads((entries[0] / "alternates.json").read_text())["alternates"]
    assert stored == [[a for a in (clean_alternate(t) for t in row) if a] for row in sampled[0]]

    second = AltPO(samples=2, max_new_tokens=6, batch_size=2)
    second.prepare(data)
    assert len(sampled) == 1  # a cache hit: nothing generated
    assert second.generated == first.generated
    assert {i: e["input_ids"] for i, e in second.alt_examples.items()} == {
        i: e["input_ids"] for i, e in first.alt_examples.items()
    }
    # the trained pairs: one drawn alternate per question (its own answer where none survived the cleaning)
    candidates = [g or [r["answer"]] for g, r in zip(first.generated, TOY_FORGET_ROWS, strict=True)]
    chosen = draw_alternates(candidates, data.seed)
    for i, answer in enumerate(chosen):
        expected = data.encode([{"question": TOY_FORGET_ROWS[i]["question"], "answer": answer}])[0]
        assert first.alt_examples[i]["input_ids"] == expected["input_ids"]

    other = copy.deepcopy(model)
    with torch.no_grad():
        other.model.layers[0].mlp.down_proj.weight[0, 0] += 1e-3
    AltPO(samples=2, max_new_tokens=6, batch_size=2).generate(dataclasses.replace(data, model=other))
    assert len(sampled) == 2  # other weights under the same model identity: generated anew
    assert len(list((tmp_path / "altpo_alternates").glob("[!.]*"))) == 2


def test_option_checks():
    for key, value in {"samples": 0, "max_new_tokens": 1.5, "batch_size": True, "temperature": 0.0}.items():
        with pytest.raises(ConfigError, match=f"method.{key}"):
            AltPO(**{key: value})
    assert dict(compose_cfg("method=altpo").method)["samples"] == 1
