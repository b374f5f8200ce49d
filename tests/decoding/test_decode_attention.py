"""The decode step's grouped attention (runner/decoding/decode_attention.py): hand-computed values, and the
model's own attention back in place after the step."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from runner.decoding.decode_attention import NAME, PROMPT_NAME, decode_attention, grouped_sdpa, prompt_sdpa
from runner.packing import PACKED_SDPA
from tests.conftest import random_llama


def test_grouped_attention_by_hand():
    """Two query heads share one key/value head (d = 1, scale 1). Keys 0 and ln 3, values 4 and 8.
    Head 1 (q = 1): softmax(0, ln 3) = (1/4, 3/4), output 4/4 + 3*8/4 = 7. Head 2 (q = 0): uniform, output 6.
    With the second key masked out both heads read the first value only: 4."""
    module = SimpleNamespace(num_key_value_groups=2)
    query = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)  # (batch, heads, query length, dim)
    key = torch.tensor([0.0, math.log(3)]).view(1, 1, 2, 1)
    value = torch.tensor([4.0, 8.0]).view(1, 1, 2, 1)
    out, _ = grouped_sdpa(module, query, key, value, None, scaling=1.0)
    assert out.shape == (1, 1, 2, 1)  # (batch, query length, heads, dim), as transformers' attention returns
    assert out.flatten().tolist() == pytest.approx([7.0, 6.0])
    mask = torch.tensor([True, False]).view(1, 1, 1, 2)
    out, _ = grouped_sdpa(module, query, key, value, mask, scaling=1.0)
    assert out.flatten().tolist() == pytest.approx([4.0, 4.0])


def test_prompt_attention_reads_only_the_prompts_positions_by_hand():
    """A 2-token prompt on a 3-position cache (one head, d = 1, scale 1): keys 0 and ln 3, values 4 and 8, and a
    third position (key 10, value 100) that the mask leaves open. Over the prompt's positions, causal: token 1
    reads value 4; token 2 softmax(0, ln 3) = (1/4, 3/4), so 7. Plain SDPA would mix in the third value."""
    module = SimpleNamespace(num_key_value_groups=1, is_causal=True)
    query = torch.tensor([0.0, 1.0]).view(1, 1, 2, 1)
    key = torch.tensor([0.0, math.log(3), 10.0]).view(1, 1, 3, 1)
    value = torch.tensor([4.0, 8.0, 100.0]).view(1, 1, 3, 1)
    causal_then_open = torch.tensor([[True, False, True], [True, True, True]]).view(1, 1, 2, 3)
    out, _ = prompt_sdpa(module, query, key, value, causal_then_open, scaling=1.0)
    assert out.shape == (1, 2, 1, 1)
    assert out.flatten().tolist() == pytest.approx([4.0, 7.0])
    out, _ = prompt_sdpa(module, query, key, value, None, scaling=1.0)  # no mask: causal over the prompt
    assert out.flatten().tolist() == pytest.approx([4.0, 7.0])
    # the prompt's second chunk (its token at cache position 1) reads positions 0 and 1: 7, the third left out
    model = random_llama(num_attention_heads=4, num_key_value_heads=2)
    model.config._attn_implementation = "sdpa"
    with decode_attention(model, prompt_start=1):
        out, _ = prompt_sdpa(module, query[:, :, 1:], key, value, causal_then_open[:, :, 1:], scaling=1.0)
    assert out.flatten().tolist() == pytest.approx([7.0])


def test_decode_attention_switches_only_inside_the_block():
    model = random_llama(num_attention_heads=4, num_key_value_heads=2)
    model.config._attn_implementation = "sdpa"
    with decode_attention(model):
        assert model.config._attn_implementation == NAME
    assert model.config._attn_implementation == "sdpa"
    model.config._attn_implementation = PACKED_SDPA  # the runner loads its models with packed SDPA
    with decode_attention(model):
        assert model.config._attn_implementation == NAME
    assert model.config._attn_implementation == PACKED_SDPA
    with decode_attention(model, prompt_start=0):  # the prompt's pass on a static cache
        assert model.config._attn_implementation == PROMPT_NAME
    assert model.config._attn_implementation == PACKED_SDPA
    model.config._attn_implementation = "eager"  # another attention is left alone
    with decode_attention(model):
        assert model.config._attn_implementation == "eager"
