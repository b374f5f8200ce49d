"""The attention the static-cache decode step runs: grouped-query SDPA without copying the keys.

transformers' ``sdpa`` attention repeats each key/value head for its query heads (``repeat_kv``) whenever
the code is being compiled (its eager path packs the query instead). On a static cache that copy covers the
whole pre-allocated length in every layer at every step, and inductor turns it into a kernel far slower than
the attention itself: on the default model (9 query heads over 3 key/value heads, batch 8, a 448-token
cache, one CPU thread) 69 ms per layer compiled against 5 ms with the query grouped instead
(docs/generation.md, "Why the compiled step was slower"). Here the one query token's heads are grouped by
their key/value head, so each key/value head is read once, in place. (``enable_gqa=True`` is no way out:
inductor lowers it to the same repeat before the CPU attention kernel.)

Registered as its own attention implementation (:data:`NAME`), with ``sdpa``'s masks, and switched on only
around the decode step (:func:`decode_attention`), so training and scoring keep the model's own attention.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from runner.packing import PACKED_SDPA

NAME = "runner_decode_sdpa"


def grouped_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """One query token over grouped key/value heads; any other call is transformers' ``sdpa``."""
    groups = getattr(module, "num_key_value_groups", 1)
    if query.shape[2] != 1 or groups == 1 or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    batch, heads, _, dim = query.shape
    # query head h reads key/value head h // groups (as repeat_kv orders them): the group's query heads become
    # the rows of one key/value head's attention, and a mask shared by the heads broadcasts over them
    grouped = query.reshape(batch, heads // groups, groups, dim)
    out = torch.nn.functional.scaled_dot_product_attention(
        grouped, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling
    )
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, grouped_sdpa)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


@contextmanager
def decode_attention(model):
    """The model runs :func:`grouped_sdpa` inside the block when its attention is ``sdpa`` or the runner's
    ``packed_sdpa`` (the loaded models' own: the same as ``sdpa`` on a padded batch); otherwise unchanged."""
    config = model.config
    before = config._attn_implementation
    if before not in ("sdpa", PACKED_SDPA):
        yield
        return
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = before
