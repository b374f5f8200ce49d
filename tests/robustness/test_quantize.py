"""Quantization: the copy's weights really are int8 / int4 (with their scales), the model itself is untouched."""

from __future__ import annotations

import pytest
import torch

from runner.errors import ConfigError
from runner.robustness.quantize import QuantizeAttack, quantized_copy
from tests.conftest import random_llama
from tests.robustness.conftest import probe


def test_int8_weights_are_int8_and_dequantise_to_within_one_step():
    model = random_llama(hidden_size=32, intermediate_size=64)
    original = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    quantized = quantized_copy(model, 8, "quanto", ["lm_head"])
    weight = quantized.model.layers[0].mlp.up_proj.weight
    assert weight._data.dtype == torch.int8 and weight._scale.shape == (original.shape[0], 1)
    # per output row, symmetric: scale = max |w| / 127, so the rounding error is at most half a step
    scale = original.abs().amax(dim=1, keepdim=True) / 127
    torch.testing.assert_close(weight._scale, scale)
    assert torch.equal(weight._data, torch.round(original / scale).to(torch.int8))
    assert (weight.dequantize() - original).abs().le(scale / 2 + 1e-7).all()
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, original)  # the model given is untouched
    assert type(quantized.lm_head.weight) is torch.nn.Parameter  # excluded: full precision


def test_int4_weights_hold_sixteen_levels_per_group():
    model = random_llama(hidden_size=64, intermediate_size=128)
    weight = quantized_copy(model, 4, "quanto", ["lm_head"]).model.layers[1].self_attn.q_proj.weight
    levels = weight._data.unpack()
    assert weight.qtype.bits == 4 and levels.min() >= 0 and levels.max() <= 15
    assert len(torch.unique(weight.dequantize())) <= 16 * weight._scale.numel()  # each group: at most 16 values


def test_a_point_per_width(tiny):
    points = QuantizeAttack(bits=[8, 4], questions=2).run(probe(tiny))
    assert [(p["setting"], p["strength"]) for p in points] == [("int8", 8), ("int4", 4)]


def test_unsupported_precision_or_device_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"robustness_attack\.quantize\.bits.*cannot quantize to 2 bits"):
        QuantizeAttack(bits=[8, 2])
    with pytest.raises(ConfigError, match=r"robustness_attack\.quantize\.backend"):
        QuantizeAttack(backend="gptq")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"quantize\.backend.*CUDA GPU only.*backend=quanto"):
            QuantizeAttack(backend="bitsandbytes", bits=4)
