"""Trace layouts (think / steps / text), the shipped GSM8K traces, and the response encoding's token counts."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from runner.data.qa import IGNORE, PromptFormat
from runner.distill.condense import FullTrace, HeadAndTail
from runner.distill.job import ResponseEncoder, prepare_examples
from runner.distill.traces import Trace, load_traces, split_trace
from runner.errors import ConfigError
from tests.conftest import ROOT, compose_cfg

THINK = "<think>\nFirst, restate.\n\nExplore a.\n\nExplore b.\n\nConclude.\n</think>\n\nThe answer is $\\boxed{7}$."


def _cfg(**kw):
    return OmegaConf.create(kw)


def test_think_layout_takes_the_solution_after_the_tag_as_the_final_answer():
    cfg = _cfg(layout="think", think_tags=["<think>", "</think>"])
    thinking, final = split_trace(THINK, cfg, {})
    assert thinking == "First, restate.\n\nExplore a.\n\nExplore b.\n\nConclude."
    assert final == "The answer is $\\boxed{7}$."
    # no solution after the tag: the answer column, boxed
    cfg = _cfg(layout="think", think_tags=["<think>", "</think>"], answer="ans", answer_template="Final: {answer}")
    assert split_trace("<think>a\n\nb</think>", cfg, {"ans": 12.0}) == ("a\n\nb", "Final: 12")


def test_steps_layout_strips_annotations_and_keeps_the_marker_line():
    cfg = _cfg(layout="steps", answer_marker="####", strip="<<[^>]*>>")
    raw = "Half is 48/2 = <<48/2=24>>24.\nTotal 48+24 = <<48+24=72>>72.\n#### 72"
    assert split_trace(raw, cfg, {}) == ("Half is 48/2 = 24.\nTotal 48+24 = 72.", "#### 72")


def test_text_layout_needs_a_final_answer_column():
    assert split_trace("a\n\nb", _cfg(layout="text", final="attempt"), {"attempt": " done "}) == ("a\n\nb", "done")
    with pytest.raises(ConfigError, match="traces.final"):
        split_trace("a", _cfg(layout="text"), {})


def test_shipped_gsm8k_traces_and_an_unknown_layout():
    cfg = compose_cfg("task=distill", "traces.subset=3").traces
    traces = load_traces(cfg)
    with open(ROOT / "data" / "gsm8k" / "train.jsonl") as f:
        first = json.loads(f.readline())
    assert len(traces) == 3 and traces[0].question == first["question"]
    assert traces[0].final == "#### 72" and "<<" not in traces[0].thinking
    with pytest.raises(ConfigError, match="traces.layout"):
        load_traces(compose_cfg("task=distill", "traces.layout=tree").traces)


class _Chars:
    """A tokenizer with one id per character: token counts are lengths."""

    eos_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def test_response_is_kept_thoughts_then_the_answer_and_only_it_is_labelled():
    fmt = PromptFormat(question="Q: {question}\nA: ", answer="{answer}")
    distill = _cfg(open="<t>", close="</t>")
    traces = _cfg(separator="\n", splitter="line")
    encoder = ResponseEncoder(_Chars(), fmt, "{question}", distill, traces)
    trace = Trace("2+2?", "one\ntwo\nthree\nfour", "#### 4")
    full = encoder.encode(0, trace, FullTrace(), seed=0)
    epic = encoder.encode(0, trace, HeadAndTail(ratio=0.5), seed=0)
    prompt = len("Q: 2+2?\nA: ")
    assert epic.kept == [0, 3] and epic.thoughts == 4
    # the condensed response, character for character, and EOS
    assert epic.example["input_ids"][prompt:] == [ord(c) for c in "<t>one\nfour\n</t>#### 4"] + [0]
    # loss on the response only
    labels = epic.example["labels"]
    assert labels[:prompt] == [IGNORE] * prompt and IGNORE not in labels[prompt:]
    # token counts are sums of the parts: opening + kept thoughts with separators + close, answer and EOS
    parts = {"open": 3, "one": 4, "two": 4, "three": 6, "four": 5, "close": len("</t>#### 4") + 1}
    assert full.response_tokens == full.response_tokens_full == sum(parts.values())
    assert epic.response_tokens == parts["open"] + parts["one"] + parts["four"] + parts["close"]
    assert epic.response_tokens_full == full.response_tokens


def test_too_long_traces_are_left_out_for_every_condenser_alike():
    fmt = PromptFormat(question="{question}", answer="{answer}")
    encoder = ResponseEncoder(_Chars(), fmt, "{question}", _cfg(open="", close=""), _cfg(separator="", splitter="line"))
    traces = [Trace("q", "a" * 10, "x"), Trace("q", "b" * 40, "y"), Trace("q", "c\nd", "z")]
    for rule in (FullTrace(), HeadAndTail(ratio=0.5)):
        kept, dropped = prepare_examples(traces, encoder, rule, max_length=20)
        assert dropped == 1 and [e.example["index"] for e in kept] == [0, 1]
        assert [e.response_tokens_full for e in kept] == [12, 4]
