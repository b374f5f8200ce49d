"""Per-row gradient norms from module hooks (runner/row_gradients.py) against the definition: one row,
one plain backward, the norm of each parameter's ``.grad``. Tied and untied heads, an embedding
with a padding index, biases, RMSNorm (the generic vjp rule), and models the rules refuse (GradNorm then takes the vmap path and gives the same values)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from runner import row_gradients
from runner.benchmarks import privacy
from runner.data.qa import IGNORE
from tests.conftest import random_llama, random_qwen2

ORDS = (1.0, 2.0, math.inf)
ROWS = [
    {"input_ids": [1, 5, 6, 7, 8], "labels": [IGNORE, IGNORE, 6, 7, 8]},
    {"input_ids": [1, 9, 10, 11, 3, 13, 14, 15], "labels": [IGNORE] * 4 + [3, 13, 14, 15]},  # 3 = padding_idx below
    {"input_ids": [1, 20, 21], "labels": [IGNORE, 20, 21]},
    {"input_ids": [2, 40, 41, 42], "labels": [IGNORE, IGNORE, 41, 42]},
]


def _definition(model, row) -> torch.Tensor:
    """(tensors, ords): one row's plain backward of its mean answer NLL."""
    model.zero_grad(set_to_none=True)
    labels = torch.tensor(row["labels"][1:])
    logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0, :-1]
    scored = labels != IGNORE
    F.cross_entropy(logits[scored], labels[scored]).backward()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return torch.tensor([[torch.linalg.vector_norm(g, ord=o).item() for o in ORDS] for g in grads], dtype=torch.float64)


def _hooked(model) -> torch.Tensor:
    inputs = privacy._answer_positions(ROWS)
    got = privacy._hooked_norms(model, dict(model.named_parameters()), inputs, list(ORDS))
    assert got is not None, "the hooks refused a model they cover"
    return got


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32))


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: random_llama(tie_word_embeddings=True, pad_token_id=3), id="llama-tied-padding-idx"),
        pytest.param(lambda: random_llama(tie_word_embeddings=False), id="llama-untied"),
        pytest.param(lambda: random_qwen2(), id="qwen2-biases"),
    ],
)
def test_hooked_row_norms_equal_one_plain_backward_per_row(build):
    model = build().eval()
    assert row_gradients.supported(model)
    got = _hooked(model)
    want = torch.stack([_definition(model, row) for row in ROWS])
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for p in model.parameters())  # the model's .grad buffers are left alone


def test_a_module_shared_by_all_rows_is_refused_and_gradnorm_takes_the_vmap_path():
    # GPT-2's learned positions: one (1, positions, width) lookup broadcast over the rows, so its
    # gradient reaches the hook summed over rows; Conv1D and LayerNorm would have been split fine
    model = _tiny_gpt2().eval()
    inputs = privacy._answer_positions(ROWS)
    assert privacy._hooked_norms(model, dict(model.named_parameters()), inputs, list(ORDS)) is None
    got = privacy.gradnorm_scores(model, ROWS, ["2"], "fp32", rows_per_call=4)
    want = torch.stack([_definition(model, row) for row in ROWS])
    assert got["mia_gradnorm_2"] == pytest.approx((-want[:, :, 1].mean(1)).tolist(), rel=1e-5, abs=1e-7)


class _ScaledNorm(nn.Module):
    """A module with a parameter of its own and a child: the hooks cannot split its gradient."""

    def __init__(self, inner: nn.Module, width: int):
        super().__init__()
        self.inner = inner
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, width))

    def forward(self, x):
        return self.inner(x) * self.scale


def test_a_model_the_hooks_refuse_takes_the_vmap_path_with_the_same_values():
    model = random_llama().eval()
    model.model.norm = _ScaledNorm(model.model.norm, model.config.hidden_size)
    assert not row_gradients.supported(model)
    got = privacy.gradnorm_scores(model, ROWS, ["1", "2", "inf"], "fp32", rows_per_call=3)
    want = torch.stack([_definition(model, row) for row in ROWS])
    for k, key in enumerate(("1", "2", "inf")):
        assert got[f"mia_gradnorm_{key}"] == pytest.approx((-want[:, :, k].mean(1)).tolist(), rel=1e-5, abs=1e-7)
