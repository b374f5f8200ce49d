"""Per-example quantities under theta_0: batched gradient norms and mean hidden states, against one pass each."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from runner import row_gradients
from runner.coreset.per_example import mean_hidden_states, per_example_grad_norms
from runner.data.qa import collate_qa
from runner.scoring import mean_nll
from tests.coreset.rows import fitted_model


class _ScaledNorm(torch.nn.Module):
    """A parameter of its own beside a child module: the hooks refuse it, so the batch takes the vmap path."""

    def __init__(self, inner: torch.nn.Module, width: int):
        super().__init__()
        self.inner, self.scale = inner, torch.nn.Parameter(torch.linspace(0.5, 1.5, width))

    def forward(self, x):
        return self.inner(x) * self.scale


@pytest.mark.parametrize("path", ["hooks", "vmap"])
def test_gradnorm_matches_one_backward_per_example(path):
    """Right-padded batches give each example the gradient norm of its own backward pass, through the
    module hooks (this Llama) and through vmap (a model the hooks refuse)."""
    model, _, encoded = fitted_model()
    if path == "vmap":
        model.model.norm = _ScaledNorm(model.model.norm, model.config.hidden_size)
    assert row_gradients.supported(model) == (path == "hooks")
    for p in model.model.layers[0].parameters():  # a partly frozen model: norms over trainable parameters only
        p.requires_grad_(False)
    norms = per_example_grad_norms(model, encoded, pad_id=0, batch_size=4, precision="fp32")
    expected = []
    for e in encoded:
        model.zero_grad(set_to_none=True)
        mean_nll(model, collate_qa([e], 0)).backward()
        expected.append(math.sqrt(sum(p.grad.pow(2).sum().item() for p in model.parameters() if p.requires_grad)))
    np.testing.assert_allclose(norms, expected, rtol=1e-4)
    assert all(p.grad is None for p in model.model.layers[0].parameters())


def test_mean_hidden_states_match_one_example_at_a_time():
    """Batched and padded, each row is the mean of that example's own last hidden states."""
    model, _, encoded = fitted_model()
    means = mean_hidden_states(model, encoded, pad_id=0, batch_size=4, precision="fp32")
    with torch.no_grad():
        for i, e in enumerate(encoded):
            hidden = model.model(input_ids=torch.tensor([e["input_ids"]])).last_hidden_state[0]
            np.testing.assert_allclose(means[i], hidden.mean(0).double().numpy(), rtol=1e-4, atol=1e-5)
