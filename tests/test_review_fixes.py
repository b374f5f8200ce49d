"""Regression tests for defects found in review: autocast and weight swaps, cache keys, config errors, tokenisation."""

from __future__ import annotations

import pytest
import torch

from runner import job
from runner.components import build
from runner.data.qa import IGNORE, PromptFormat, encode_qa
from runner.errors import ConfigError
from runner.methods.base import Method
from runner.methods.theta0 import OriginalWeights
from tests.conftest import compose_cfg


def test_original_weights_swap_is_seen_inside_one_autocast_region():
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3, bias=False)
    x = torch.randn(2, 4)
    theta0_out = x @ layer.weight.detach().T
    original = OriginalWeights(layer)
    with torch.no_grad():
        layer.weight.add_(1.0)  # "training" moved the weights
    theta_out = x @ layer.weight.detach().T
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = layer(x).float()  # caches a bf16 copy of theta
        with original.active():
            ref = layer(x).float()
        after = layer(x).float()
    assert torch.allclose(first, theta_out, atol=0.1)
    assert torch.allclose(ref, theta0_out, atol=0.1)
    assert torch.allclose(after, theta_out, atol=0.1)
    assert not torch.allclose(ref, after, atol=0.1)


def test_every_experiment_and_method_instantiates():
    from pathlib import Path

    from tests.conftest import CONF_DIR

    evaluation_only = {"reasoning_smoke_tiny", "reflection_demo_smollm2", "cyclicreflex_math500", "none"}
    for exp in sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml")):
        method = build(compose_cfg(f"experiment={exp}").method, Method, "method")
        assert (method is None) == (exp in evaluation_only), exp
    for name in sorted(p.stem for p in (Path(CONF_DIR) / "method").glob("*.yaml")):
        assert (build(compose_cfg(f"method={name}").method, Method, "method") is None) == (name in evaluation_only), (
            name
        )


def test_method_config_error_is_not_wrapped_by_hydra(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="method.variant"):
        job.run(tiny_cfg("method=task_vector", "method.variant=bogus"), tmp_path)


def test_finetuned_model_cache_key_follows_the_prompt_format(tmp_path):
    from runner.finetuned import FinetunedModel

    cfg = compose_cfg("experiment=tofu_smoke_tiny")
    rows = [{"question": "q", "answer": "a"}]

    def key(encoding):
        return FinetunedModel(
            "target",
            rows,
            {"tiny": 1},
            encoding,
            benchmark="tofu",
            finetune_cfg=cfg.benchmark.finetune,
            trainable_layers=cfg.model.trainable_layers,
            precision=cfg.precision,
            cache_dir=tmp_path,
        ).entry.path.name

    base = {"format": ["Q: {question}\nA: ", "{answer}"], "max_length": 96}
    assert key(base) == key(dict(base))
    assert key(base) != key({**base, "max_length": 64})
    assert key(base) != key({**base, "format": ["Question: {question}\n", "{answer}"]})


def test_answer_tokens_survive_a_merge_across_the_prompt_boundary():
    from runner.models import _train_tiny_tokenizer

    tok = _train_tiny_tokenizer(512)
    fmt = PromptFormat(question="Question: {question}\nAnswer: ", answer="{answer}")  # trailing space
    enc = encode_qa(tok, fmt, "Who wrote it?", "The author did.", max_length=128)
    answer_ids = [t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != IGNORE]
    assert tok.decode(answer_ids[:-1]).strip() == "The author did."
    assert answer_ids[-1] == tok.eos_token_id
