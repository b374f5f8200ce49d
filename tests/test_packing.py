"""Padding-free steps (runner/packing.py), per-part backward (runner/training.py), the chunked LM head
(runner/scoring.py): the same numbers as the padded, one-backward, one-piece computation.

Tolerances: fp32 on a toy Llama; per-example losses to 1e-5 relative, gradients to 1e-5 of their
largest entry (packing changes only the order of float sums).
"""

from __future__ import annotations

import pytest
import torch

from runner.data.qa import IGNORE, collate_qa
from runner.packing import PACKED_SDPA, last_hidden_state, padded_forward, use_packed_attention
from runner.scoring import head_nll, sequence_logprob, token_nll
from runner.training import backward_by_parts
from tests.conftest import (
    TOY_BOS,
    TOY_EOS,
    TOY_PAD,
    method_from_yaml,
    random_llama,
    toy_batch,
    toy_data,
    toy_encode,
)

# the methods whose per-token losses run through the padding-free forward
METHODS = ["npo", "graddiff", "simnpo", "idkdpo", "wga", "undial"]


@pytest.fixture(scope="module")
def packed_llama():
    """A toy Llama with grouped-query attention (4 query heads on 2 key/value heads), switched to packed SDPA."""
    model = random_llama(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=TOY_PAD,
        bos_token_id=TOY_BOS,
        eos_token_id=TOY_EOS,
    ).train()
    use_packed_attention(model)
    assert model.config._attn_implementation == PACKED_SDPA
    return model


def grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def assert_grads_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        scale = b[name].abs().max().clamp(min=1e-12)
        assert ((a[name] - b[name]).abs().max() / scale).item() < 1e-5, name


def test_packed_hidden_states_equal_padded_ones_right_and_left_padded(packed_llama):
    rows = toy_encode([{"question": "Who is Ann?", "answer": "A"}, {"question": "Q?", "answer": "Longer answer"}])
    batch = collate_qa(rows, TOY_PAD)
    assert not batch["attention_mask"].bool().all()  # the test needs padding
    real = batch["attention_mask"].bool()
    packed = last_hidden_state(packed_llama.base_model, batch["input_ids"], batch["attention_mask"])
    with padded_forward():
        padded = last_hidden_state(packed_llama.base_model, batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(packed[real], padded[real], rtol=1e-5, atol=1e-5)
    assert packed[~real].abs().max() == 0  # padding positions carry nothing
    # left padding: each row's real tokens at the end, positions still counted from the row's first real token
    lengths = real.sum(1)
    width = real.shape[1]
    left_ids = torch.stack([batch["input_ids"][i].roll(int(width - lengths[i])) for i in range(2)])
    left_mask = torch.stack([real[i].roll(int(width - lengths[i])) for i in range(2)]).long()
    left = last_hidden_state(packed_llama.base_model, left_ids, left_mask)
    torch.testing.assert_close(left[left_mask.bool()], padded[real], rtol=1e-5, atol=1e-5)


def test_eager_attention_falls_back_to_the_padded_forward():
    model = random_llama(attn_implementation="eager")
    use_packed_attention(model)  # only SDPA models switch
    assert model.config._attn_implementation == "eager"
    ids = torch.tensor([[1, 5, 6, 0], [1, 7, 8, 9]])
    mask = (ids != 0).long()
    got = last_hidden_state(model.base_model, ids, mask)
    want = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", METHODS)
def test_packed_loss_and_gradients_equal_padded_ones(packed_llama, name):
    method = method_from_yaml(name)
    data = toy_data(packed_llama)
    method.prepare(data)
    batch = toy_batch(data)
    assert not batch["forget"]["attention_mask"].bool().all()
    packed_logp, _ = sequence_logprob(packed_llama, batch["forget"])
    packed_loss, _ = method.loss(packed_llama, batch)
    packed_loss.backward()
    packed = grads(packed_llama)
    with padded_forward():
        padded_logp, _ = sequence_logprob(packed_llama, batch["forget"])
        padded_loss, _ = method.loss(packed_llama, batch)
        padded_loss.backward()
    padded = grads(packed_llama)
    torch.testing.assert_close(packed_logp, padded_logp, rtol=1e-5, atol=1e-5)  # per example
    assert packed_loss.item() == pytest.approx(padded_loss.item(), rel=1e-5)
    assert_grads_close(packed, padded)


@pytest.mark.parametrize("name", ["npo", "graddiff", "simnpo", "idkdpo", "wga", "undial", "ga", "ceu", "satimp", "pdu"])
def test_backward_by_parts_equals_one_backward_of_the_sum(packed_llama, name):
    method = method_from_yaml(name)
    data = toy_data(packed_llama)
    method.prepare(data)
    batch = toy_batch(data)
    loss, terms = method.loss(packed_llama, batch)
    (0.5 * loss).backward()
    joint = grads(packed_llama)
    total, part_terms = backward_by_parts(method.loss_parts)(packed_llama, batch, 0.5)
    split = grads(packed_llama)
    assert total.item() == pytest.approx(loss.item(), rel=1e-6)
    assert part_terms == pytest.approx(terms, rel=1e-6)
    assert_grads_close(split, joint)
    # a forget + retain method has two parts, one where its retain weight is 0 (UNDIAL's default)
    expected = 1 if name in ("ga", "ceu") else 1 + (method.alpha != 0)  # GA and CE-U: forget-only
    assert len(list(method.loss_parts(packed_llama, batch))) == expected


def test_chunked_head_equals_the_whole_head_values_and_gradients():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden = torch.randn(23, 8, requires_grad=True)
    targets = torch.randint(0, 50, (23,))
    whole = head_nll(head, hidden, targets, chunk=100)
    by_hand = -torch.log_softmax(hidden @ head.weight.T, dim=-1)[torch.arange(23), targets]
    torch.testing.assert_close(whole, by_hand)
    weights = torch.randn(23)
    (weights * whole).sum().backward()
    want = (hidden.grad.clone(), head.weight.grad.clone())
    hidden.grad, head.weight.grad = None, None
    chunked = head_nll(head, hidden, targets, chunk=5)  # 5 chunks, the last of 3 positions
    torch.testing.assert_close(chunked, whole)
    (weights * chunked).sum().backward()
    torch.testing.assert_close(hidden.grad, want[0])
    torch.testing.assert_close(head.weight.grad, want[1])


def test_text_window_log_probs_with_the_chunked_head_equal_the_whole_head(packed_llama, monkeypatch):
    """A text row scores every token: past HEAD_CHUNK positions token_nll runs the head in chunks."""
    import runner.scoring as scoring

    ids = torch.randint(3, 50, (3, 20))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    batch["labels"][0, :2] = IGNORE
    whole, mask = token_nll(packed_llama, batch)
    monkeypatch.setattr(scoring, "HEAD_CHUNK", 5)  # 56 scored positions: 12 chunks, the last of 1
    chunked, mask_chunked = token_nll(packed_llama, batch)
    assert torch.equal(mask, mask_chunked) and int(mask.sum()) == 56
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
