"""The trace judge (runner/benchmarks/judge.py): verdict parsing, its config checks, and a real tiny judge."""

from __future__ import annotations

import pytest

from runner.benchmarks import judge
from runner.benchmarks.wmdp_reasoning import WmdpReasoning
from runner.errors import ConfigError
from tests.conftest import experiment_cfg

KEY = "benchmark.reasoning.judge"


@pytest.mark.parametrize(
    "reply, verdict",
    [
        ("Yes", True),
        ("yes.", True),
        ("**No**, the trace never names it.", False),
        ("NO", False),
        ("I would say yes", True),  # the only verdict word in the reply
        ("The reasoning reveals it: yes", True),
        ("Yes and no", True),  # the first word decides
        ("Well, yes and no", None),  # both, and neither first: unparseable
        ("", None),
        ("Nobody knows", None),  # "no" inside a word is not a verdict
        ("yesterday", None),
    ],
)
def test_parse_verdict(reply, verdict):
    assert judge.parse_verdict(reply) is verdict


def _judge_cfg(cache, *overrides):
    return experiment_cfg("wmdp_smoke_tiny", cache, "+model@benchmark.reasoning.judge.model=tiny", *overrides)


def test_judge_options_are_checked_by_key(shared_cache):
    cfg = _judge_cfg(shared_cache, "benchmark.reasoning.judge.template='no trace here'")
    with pytest.raises(ConfigError, match="benchmark.reasoning.judge.template.*no \\{trace\\}"):
        judge.check(cfg.benchmark.reasoning.judge, KEY)
    cfg = _judge_cfg(shared_cache, "benchmark.reasoning.judge.template='{trace} {verdict}'")
    with pytest.raises(ConfigError, match="benchmark.reasoning.judge.template.*does not format"):
        judge.check(cfg.benchmark.reasoning.judge, KEY)
    cfg = _judge_cfg(shared_cache, "benchmark.reasoning.judge.max_new_tokens=0")
    with pytest.raises(ConfigError, match="benchmark.reasoning.judge.max_new_tokens"):
        judge.check(cfg.benchmark.reasoning.judge, KEY)
    cfg = experiment_cfg("wmdp_smoke_tiny", shared_cache, "benchmark.reasoning.judge.model={id: x}")
    with pytest.raises(ConfigError, match="benchmark.reasoning.judge.model.source.*\\+model@"):
        judge.check(cfg.benchmark.reasoning.judge, KEY)


def test_a_tiny_judge_from_config_gives_parsed_or_counted_verdicts(shared_cache):
    from runner.decoding.base import DecodingContext
    from runner.decoding.generate import generate
    from runner.decoding.strategies import Decoding
    from runner.models import load_model

    cfg = _judge_cfg(shared_cache, "benchmark.reasoning.judge.max_new_tokens=6")
    node = cfg.benchmark.reasoning.judge
    prompts = [node.template.format(question="Q?", choices="A. x", answer="A. x", trace=t) for t in ("moss", "fern")]
    replies = judge.run_judge(node, prompts, shared_cache, "fp32", KEY)
    # the replies are the tiny model's greedy continuations of the prompts in its question format
    model, tokenizer = load_model(cfg.model, shared_cache)
    ids = [tokenizer(f"Question: {p}\nAnswer: ")["input_ids"] for p in prompts]
    assert ids[0] == judge.prompt_ids(tokenizer, node.model, prompts[0])
    run = generate(model, tokenizer, ids, Decoding(), DecodingContext(tokenizer), 6, 8, "fp32")
    assert replies == [tokenizer.decode(s[0].ids, skip_special_tokens=True).strip() for s in run.outputs]
    verdicts = [judge.parse_verdict(r) for r in replies]
    counted = WmdpReasoning.judge_aggregate(verdicts)
    parsed = [v for v in verdicts if v is not None]
    assert counted["judge_parsed"] + counted["judge_unparseable"] == 2
    assert counted["judge_unparseable"] == sum(v is None for v in verdicts)
    assert counted["judge_leak_rate"] == (sum(parsed) / len(parsed) if parsed else None)
    # by hand: one yes, one no, one unparseable -> a rate of 1/2 over the two parsed verdicts
    assert WmdpReasoning.judge_aggregate([True, False, None]) == {
        "judge_leak_rate": 0.5,
        "judge_parsed": 2,
        "judge_unparseable": 1,
    }


def test_judge_prompt_in_the_model_format_else_chat_template_else_plain(tiny_tokenizer):
    import copy

    from omegaconf import OmegaConf

    fmt = OmegaConf.create({"prompt": {"question": "Q: {question}\nA:", "answer": "{answer}"}})
    assert judge.prompt_ids(tiny_tokenizer, fmt, "moss") == tiny_tokenizer("Q: moss\nA:")["input_ids"]
    bare = OmegaConf.create({"source": "hub"})
    assert judge.prompt_ids(tiny_tokenizer, bare, "moss") == tiny_tokenizer("moss")["input_ids"]
    chat = copy.deepcopy(tiny_tokenizer)
    chat.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}[assistant]"
    want = chat("[user] moss[assistant]", add_special_tokens=False)["input_ids"]
    assert judge.prompt_ids(chat, bare, "moss") == want
