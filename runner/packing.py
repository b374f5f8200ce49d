"""Padding-free forward passes: a padded batch runs as one row of its real tokens.

A right- or left-padded batch of B sequences spends matmul work on every padding position (a
fifth of a TOFU forget + retain batch). Here the real tokens of all rows are packed into one row
of length N = (number of real tokens), with position ids restarting at 0 for each sequence, and
attention kept inside each sequence:

- on CPU (and on GPU without flash-attention) by the attention function registered below as
  ``packed_sdpa``: PyTorch's SDPA, causal, once per sequence of the packed row (the sequence
  bounds travel as ``cu_seq_lens_q``, the keyword that transformers' flash-attention path reads);
- with ``flash_attention_2`` / ``_3`` loaded, by flash-attention's variable-length kernel, which
  reads the same keywords.

Every other call (evaluation with a KV cache, generation) goes through plain SDPA unchanged. The
last hidden states are scattered back to the padded (B, T, H) shape, zeros at padding positions,
so callers index them as before; values equal the padded forward's within float rounding (the
same positions, the same causal attention over the same keys).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

PACKED_SDPA = "packed_sdpa"
# the attention implementations that honour cu_seq_lens_q (one packed row, sequences kept apart)
PACKABLE = {PACKED_SDPA, "flash_attention_2", "flash_attention_3"}
_enabled = True


def _packed_sdpa(module, query, key, value, attention_mask, cu_seq_lens_q=None, **kwargs):
    """Causal SDPA once per sequence of a packed row (``cu_seq_lens_q`` given), plain SDPA otherwise.

    query (1, heads, N, d), key / value (1, kv_heads, N, d); returns (1, N, heads, d) like SDPA's path.
    The sequences are views from one ``split`` (no copies to keep for backward), whose backward joins
    their gradients in one concatenation; slicing each sequence instead zero-filled a whole
    (heads, N, d) gradient per sequence and layer. Putting the sequences back side by side, padded,
    for one SDPA call measured no faster here and kept the padded copies alive until backward.
    """
    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    for unused in ("cu_seq_lens_k", "max_length_q", "max_length_k"):
        kwargs.pop(unused, None)
    lengths = (cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]).tolist()
    parts = [
        sdpa_attention_forward(module, q, k, v, None, **kwargs)[0]
        for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2), strict=True)
        if q.shape[2]
    ]
    return torch.cat(parts, dim=1), None


AttentionInterface.register(PACKED_SDPA, _packed_sdpa)
AttentionMaskInterface.register(PACKED_SDPA, sdpa_mask)  # unpacked calls get SDPA's masks


def use_packed_attention(model) -> None:
    """Switch a model loaded with SDPA attention to ``packed_sdpa`` (same results; packs when asked)."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "_attn_implementation", None) == "sdpa":
        model.set_attn_implementation(PACKED_SDPA)


@contextlib.contextmanager
def padded_forward():
    """Turn packing off inside the block (the equivalence tests compare both ways)."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def last_hidden_state(base_model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The base model's last hidden state (B, T, H) of a padded batch, computed on its real tokens only.

    Falls back to the padded forward where the model's attention cannot keep packed sequences apart
    (eager attention), where there is no padding, or inside ``padded_forward()``. Each row's real
    tokens must be contiguous (right or left padding).
    """
    real = attention_mask.bool()
    impl = getattr(base_model.config, "_attn_implementation", None)
    if not _enabled or impl not in PACKABLE or bool(real.all()):
        return base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    lengths = real.sum(dim=1)
    cu = F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    longest = int(lengths.max())
    positions = (real.cumsum(dim=1) - 1)[real]
    packed = base_model(
        input_ids=input_ids[real].unsqueeze(0),
        # all ones: no padding mask to build, and no packed-sequence mask either (the attention separates them)
        attention_mask=torch.ones(1, positions.numel(), dtype=attention_mask.dtype, device=attention_mask.device),
        position_ids=positions.unsqueeze(0),
        cu_seq_lens_q=cu,
        cu_seq_lens_k=cu,
        max_length_q=longest,
        max_length_k=longest,
        use_cache=False,
    ).last_hidden_state[0]
    hidden = packed.new_zeros(*input_ids.shape, packed.shape[-1])
    return hidden.masked_scatter(real.unsqueeze(-1), packed)
