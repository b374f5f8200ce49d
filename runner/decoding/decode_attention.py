"""The attention of the static-cache passes: grouped-query SDPA without copying the keys for the one-token step,
and the prompt's pass over the prompt's own positions only.

transformers' ``sdpa`` attention repeats each key/value head for its query heads (``repeat_kv``) whenever
the code is being compiled (its eager path packs the query instead). On a static cache that copy covers the
whole pre-allocated length in every layer at every step, and inductor turns it into a kernel far slower than
the attention itself: on the default model (9 query heads over 3 key/value heads, batch 8, a 448-token
cache, one CPU thread) 69 ms per layer compiled against 5 ms with the query grouped instead
(docs/generation.md, "Why the compiled step was slower"). Here the one query token's heads are grouped by
their key/value head, so each key/value head is read once, in place. (``enable_gqa=True`` is no way out:
inductor lowers it to the same repeat before the CPU attention kernel.)

The prompt's pass has the same problem at a larger scale: on the pre-allocated cache, ``sdpa`` repeats the
keys and values and scores every prompt token against the whole cache length, most of it empty. At batch 32,
133-token prompts and a 448-token cache that made the prompt's pass the peak of the whole generation, about
450 MiB above the cache (docs/generation.md, "Peak memory"). The prompt's pass fills the cache from its
first position, so after a chunk of the prompt from position ``start`` the keys written so far are the first
``start + chunk length``: :func:`prompt_sdpa` attends over those only.

Registered as attention implementations (:data:`NAME`, :data:`PROMPT_NAME`), with ``sdpa``'s masks, and
switched on only around the static cache's passes (:func:`decode_attention`), so training and scoring keep
the model's own attention.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from runner.packing import PACKED_SDPA

NAME = "runner_decode_sdpa"
PROMPT_NAME = "runner_prompt_sdpa"
# the cache position the prompt chunk now running starts at (set by decode_attention(model, prompt_start=...))
_prompt_start: ContextVar[int] = ContextVar("prompt_start", default=0)


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


def prompt_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """A chunk of the prompt's pass on a static cache: ``sdpa`` over the cache positions written so far.

    The positions after them hold no key yet (zeros, masked out), so leaving them out changes no value; what it
    saves is their repeated copies and their scores, which made this pass the generation's memory peak.
    """
    filled = _prompt_start.get() + query.shape[2]
    key, value = key[:, :, :filled], value[:, :, :filled]
    if attention_mask is not None:
        attention_mask = attention_mask[..., :filled]
    position_bias = kwargs.pop("position_bias", None)
    if position_bias is not None:
        kwargs["position_bias"] = position_bias[..., :filled]
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)


for _name, _attention in ((NAME, grouped_sdpa), (PROMPT_NAME, prompt_sdpa)):
    AttentionInterface.register(_name, _attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(_name, sdpa_mask)


@contextmanager
def decode_attention(model, prompt_start: int | None = None):
    """The model runs :func:`grouped_sdpa` inside the block (or, given ``prompt_start``, :func:`prompt_sdpa` for a
    chunk of the prompt's pass that starts at that cache position) when its attention is ``sdpa`` or the runner's
    ``packed_sdpa`` (the loaded models' own: the same as ``sdpa`` on a padded batch); otherwise unchanged."""
    config = model.config
    before = config._attn_implementation
    if before not in ("sdpa", PACKED_SDPA):
        yield
        return
    config._attn_implementation = NAME if prompt_start is None else PROMPT_NAME
    token = _prompt_start.set(prompt_start or 0)
    try:
        yield
    finally:
        config._attn_implementation = before
        _prompt_start.reset(token)
