"""The original weights (runner/methods/theta0.py) swapped in inside one autocast region."""

from __future__ import annotations

import torch

from runner.methods.theta0 import OriginalWeights


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
