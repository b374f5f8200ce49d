"""Shared fixtures: compose the real configs and shrink them to the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = str(ROOT / "conf")
TINY = ["experiment=tofu_smoke_tiny"]


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the session: the tiny model and its reference models are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny_cfg(shared_cache):
    def make(*overrides: str):
        return compose_cfg(*TINY, f"paths.cache_dir={shared_cache}", *overrides)

    return make


def random_llama(**config):
    """A seeded random-weight LlamaForCausalLM for unit tests: tiny defaults, any LlamaConfig field overridable."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    sizes = dict(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    return LlamaForCausalLM(LlamaConfig(**{**sizes, **config}))


@pytest.fixture(scope="session")
def smollm2(shared_cache):
    """(model, tokenizer) of the real default model, SmolLM2-135M-Instruct, dequantised once per session."""
    from runner.models import load_model

    return load_model(compose_cfg().model, shared_cache)
