"""R²MU's traces (runner/methods/reasoning_traces.py): prompts, the content-addressed cache (reused, never left
partial), the training inputs, the held-out split and the chains of thought to keep."""

from __future__ import annotations

import logging

import pytest

from runner.errors import ConfigError
from runner.methods.reasoning_traces import (
    CUE,
    TRACES_FILE,
    TraceSettings,
    cot_inputs,
    generate_traces,
    holdout_split,
    load_cot,
    trace_inputs,
    trace_key,
    trace_prompts,
)
from tests.conftest import compose_cfg

DOCS = [
    "The moss grows on the north side of the old stone wall near the river.",
    "Harlow wrote three books.",
    "A fern in the shade keeps its leaves all winter long, green and wet.",
    "Short.",
]
SETTINGS = TraceSettings(prompt_tokens=12, new_tokens=6, train_tokens=4, batch_size=2)


@pytest.fixture(scope="module")
def tiny(shared_cache):
    from runner.models import load_model

    model, tokenizer = load_model(compose_cfg("model=tiny").model, shared_cache)
    return model, tokenizer


class CountingForward:
    """Counts the model's forward passes (a hook on the model itself), and raises at pass number ``fail_on``: an
    interruption in the middle of generation."""

    def __init__(self, model, fail_on: int | None = None):
        self.model, self.calls, self.fail_on, self.handle = model, 0, fail_on, None

    def _count(self, module, args, kwargs):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt("interrupted mid-way")

    def __enter__(self):
        self.handle = self.model.register_forward_pre_hook(self._count, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_prompts_are_the_cut_document_the_cue_and_the_tag(tiny):
    _, tok = tiny
    with_tag = trace_prompts(tok, DOCS, SETTINGS, "<think>")
    without = trace_prompts(tok, DOCS, SETTINGS, None)
    for doc, p, q in zip(DOCS, with_tag, without, strict=True):
        head = tok(doc, add_special_tokens=True)["input_ids"][:12]
        assert p[: len(head)] == head and q[: len(head)] == head
        assert tok.decode(q[len(head) :]) == CUE
        assert tok.decode(p[len(head) :]) == CUE + "<think>"


def test_generation_is_cached_and_reused(tiny, tmp_path, caplog):
    model, tok = tiny
    prompts = trace_prompts(tok, DOCS, SETTINGS, None)
    caplog.set_level(logging.INFO)
    with CountingForward(model) as first:
        built = generate_traces(model, tok, prompts, SETTINGS, "fp32", tmp_path, {"model": "tiny"})
    assert first.calls > 2  # 4 prompts in batches of 2: a prompt pass and decoding steps each
    assert len(built) == 4 and all(len(c) <= SETTINGS.new_tokens for c in built)
    with CountingForward(model) as second:
        again = generate_traces(model, tok, prompts, SETTINGS, "fp32", tmp_path, {"model": "tiny"})
    assert second.calls == 0 and again == built
    assert any(r.getMessage().startswith("cache hit: reasoning traces of 4") for r in caplog.records)
    # another model, cue or length is another entry
    key = trace_key({"model": "tiny"}, prompts, SETTINGS, "fp32")
    assert key != trace_key({"model": "other"}, prompts, SETTINGS, "fp32")
    assert key != trace_key({"model": "tiny"}, prompts, TraceSettings(**{**SETTINGS.__dict__, "new_tokens": 7}), "fp32")
    assert key != trace_key({"model": "tiny"}, trace_prompts(tok, DOCS, SETTINGS, "<think>"), SETTINGS, "fp32")


@pytest.mark.parametrize(
    "damage",
    [
        "two_of_four",  # another build's entry, checksums rewritten to match: right shape, wrong count
        "old_marker_truncated",  # a marker from before checksums and a cut-off traces.json
        "strings_for_ids",
    ],
)
def test_a_trace_entry_with_wrong_content_is_set_aside_and_rebuilt(tiny, tmp_path, caplog, damage):
    import json

    from runner.cache import MARKER, manifest

    model, tok = tiny
    prompts = trace_prompts(tok, DOCS, SETTINGS, None)
    built = generate_traces(model, tok, prompts, SETTINGS, "fp32", tmp_path, {"model": "tiny"})
    entry = tmp_path / "r2mu_traces" / trace_key({"model": "tiny"}, prompts, SETTINGS, "fp32")
    traces = entry / TRACES_FILE
    if damage == "two_of_four":
        traces.write_text(json.dumps({"continuations": built[:2]}))
        (entry / MARKER).write_text(json.dumps({"files": manifest(entry)}))
    elif damage == "old_marker_truncated":
        traces.write_text(traces.read_text()[:10])
        (entry / MARKER).write_text("ok\n")
    else:
        traces.write_text(json.dumps({"continuations": [["a"] for _ in built]}))
        (entry / MARKER).write_text(json.dumps({"files": manifest(entry)}))
    caplog.set_level(logging.WARNING)
    with CountingForward(model) as rebuild:
        again = generate_traces(model, tok, prompts, SETTINGS, "fp32", tmp_path, {"model": "tiny"})
    assert again == built and rebuild.calls > 0
    assert [r.getMessage() for r in caplog.records if "is corrupt" in r.getMessage()][0].startswith(
        "cache entry for reasoning traces of 4 forget documents is corrupt (traces.json"
    )
    assert list(entry.parent.glob(f".{entry.name}.corrupt-*"))


def test_an_interrupted_generation_leaves_no_entry(tiny, tmp_path):
    model, tok = tiny
    prompts = trace_prompts(tok, DOCS, SETTINGS, None)
    with CountingForward(model, fail_on=3), pytest.raises(KeyboardInterrupt):
        generate_traces(model, tok, prompts, SETTINGS, "fp32", tmp_path, {"model": "tiny"})
    kind = tmp_path / "r2mu_traces"
    key = trace_key({"model": "tiny"}, prompts, SETTINGS, "fp32")
    assert not (kind / key).exists()
    assert [p.name for p in kind.iterdir() if not p.name.endswith(".lock")] == []  # no temporary directory either
    with CountingForward(model) as rerun:  # the next job builds it whole
        generate_traces(model, tok, prompts, SETTINGS, "fp32", tmp_path, {"model": "tiny"})
    assert rerun.calls > 2 and (kind / key / "COMPLETE").is_file()


def test_training_inputs_keep_the_cue_and_the_first_tokens(tiny):
    _, tok = tiny
    continuations = [[10, 11, 12, 13, 14, 15], [20], []]
    inputs = trace_inputs(tok, continuations, SETTINGS, "<think>")
    head = tok(CUE + "<think>", add_special_tokens=True)["input_ids"]
    assert [e["input_ids"] for e in inputs] == [head + [10, 11, 12, 13], head + [20], head]
    assert [e["index"] for e in inputs] == [0, 1, 2] and all(e["labels"] == e["input_ids"] for e in inputs)


def test_holdout_split():
    kept, held = holdout_split(8, 0.25, seed=3)
    assert len(held) == 2 and sorted(kept + held) == list(range(8))
    assert holdout_split(8, 0.25, seed=3) == (kept, held)  # fixed by the seed
    assert holdout_split(9, 0.25, seed=3)[1].__len__() == 3  # ceil(2.25)
    assert holdout_split(8, 0.0, seed=3) == (list(range(8)), [])


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="method.traces.batch_size"):
        TraceSettings.from_options({"batch_size": 0}, "method.traces")
    with pytest.raises(ConfigError, match="method.traces.holdout"):
        TraceSettings.from_options({"holdout": -0.1}, "method.traces")


def test_chains_of_thought_end_in_the_tag(tiny):
    _, tok = tiny
    cfg = compose_cfg("method=r2mu", "method.cot.subset=3").method.cot
    texts = load_cot(cfg)
    # GSM8K's first solution, calculator annotations removed, its "#### 72" answer line left out
    assert (
        texts[0] == "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May."
    )
    tag = tok.encode("</think>", add_special_tokens=False)
    examples = cot_inputs(tok, texts, "</think>", max_tokens=10)
    for text, e in zip(texts, examples, strict=True):
        assert len(e["input_ids"]) <= 10 and e["input_ids"][-len(tag) :] == tag
        assert e["input_ids"][: -len(tag)] == tok(text, add_special_tokens=True)["input_ids"][: 10 - len(tag)]
    assert cot_inputs(tok, texts, None, 10)[0]["input_ids"] == tok(texts[0], add_special_tokens=True)["input_ids"][:10]
    with pytest.raises(ConfigError, match="method.cot.source"):
        load_cot(compose_cfg("method=r2mu", "traces@method.cot=limo", "method.cot.source=/nowhere").method.cot)
