"""The one-token decode step on a pre-allocated (static) KV cache, compiled once per shape.

transformers' ``StaticCache`` holds a fixed ``(batch, heads, length, dim)`` buffer per layer, so every
decode step has the same shapes and ``torch.compile`` traces it once per (model, batch size, cache
length bucket). Cache lengths are rounded up to a multiple of ``LENGTH_BUCKET`` so batches whose prompts
differ by a few tokens share one compiled step. The caches are kept per (batch, length) and reused
(``reset``): the compiled code guards on the cache tensors' identity (they are marked static
addresses), so a fresh cache per batch would recompile every batch.

Inductor keeps its compiled kernels on disk (``TORCHINDUCTOR_CACHE_DIR``, set under the runner's
cache directory by :mod:`runner.decoding.engine`): a second run of the same shapes compiles nothing.
"""

from __future__ import annotations

import time

import torch
from transformers import StaticCache

from runner.decoding.decode_attention import decode_attention

LENGTH_BUCKET = 64
# rows x positions per chunk of the prompt's pass: its activations (about 2 MiB per layer at the default model's
# width) stay small next to the cache; the whole pass, in one or in chunks of 1,024 or 256, measured the same
# time here (docs/generation.md, "Peak memory")
PROMPT_CHUNK_TOKENS = 256


def cache_length(prompt_len: int, max_new_tokens: int) -> int:
    """Prompt + cap rounded up to the bucket (one compiled step serves every batch in the bucket)."""
    need = prompt_len + max_new_tokens
    return -(-need // LENGTH_BUCKET) * LENGTH_BUCKET


def batch_buckets(rows: int) -> list[int]:
    """The batch sizes a batch of ``rows`` compacts through as rows finish: ``rows``, then powers of two below.

    Finished rows leave at these boundaries only (one compiled step per size, at most log2(rows) + 1
    of them), so a row that ended costs at most as much as one still going until the next boundary.
    """
    sizes, p = [rows], 1
    while p < rows:
        p *= 2
    p //= 2
    while p >= 1:
        if p < sizes[-1]:
            sizes.append(p)
        p //= 2
    return sizes


class StaticDecoder:
    """Static caches and the (optionally compiled) decode step for one model."""

    def __init__(self, model, compile: bool):
        self.model, self.compile = model, compile
        self.caches: dict[tuple[int, int], StaticCache] = {}
        self.compiled_shapes: set[tuple[int, int]] = set()
        self.compile_seconds = 0.0
        if compile:  # one compile per (batch size, length bucket): more shapes than dynamo's default limit of 8
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        # on CUDA the step replays as one CUDA graph (a small model's step is mostly kernel launches)
        mode = "reduce-overhead" if next(model.parameters()).device.type == "cuda" else None
        self._step = torch.compile(self._forward, dynamic=False, mode=mode) if compile else self._forward

    def _forward(self, input_ids, attention_mask, position_ids, cache):
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache, use_cache=True
        )
        return out.logits[:, -1].float()

    def cache(self, rows: int, length: int) -> StaticCache:
        """The (reset) static cache for this shape, created once."""
        key = (rows, length)
        if key not in self.caches:
            self.caches[key] = StaticCache(config=self.model.config, max_cache_len=length)
        else:
            self.caches[key].reset()
        return self.caches[key]

    def prefill(self, input_ids, attention_mask, position_ids, cache) -> torch.Tensor:
        """The prompt's pass, eager (its length differs per batch; compiling it per length rarely pays).

        In chunks of about ``PROMPT_CHUNK_TOKENS`` (rows x positions), each attending over the cache positions
        written so far (:func:`runner.decoding.decode_attention.prompt_sdpa`), so that its activations stay small
        next to the pre-allocated cache: in one pass over the whole cache it was the generation's memory peak.
        """
        rows, length = input_ids.shape
        chunk = max(1, PROMPT_CHUNK_TOKENS // rows)
        for start in range(0, length, chunk):
            end = min(start + chunk, length)
            with decode_attention(self.model, prompt_start=start):
                out = self.model(
                    input_ids=input_ids[:, start:end],
                    attention_mask=attention_mask,
                    position_ids=position_ids[:, start:end],
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
        return out.logits[:, -1].float()

    def step(self, input_ids, attention_mask, position_ids, cache) -> torch.Tensor:
        """Logits (float32) of the next token; the first call of a shape compiles (timed into compile_seconds).

        Attention runs grouped over the key/value heads (:mod:`runner.decoding.decode_attention`): compiled,
        transformers' own path would copy the whole cache per layer per step.
        """
        shape = (input_ids.shape[0], attention_mask.shape[1])
        if not self.compile or shape in self.compiled_shapes:
            with decode_attention(self.model):
                return self._step(input_ids, attention_mask, position_ids, cache)
        start = time.perf_counter()
        with decode_attention(self.model):
            logits = self._step(input_ids, attention_mask, position_ids, cache)
        self.compile_seconds += time.perf_counter() - start
        self.compiled_shapes.add(shape)
        return logits

    def compact(self, cache: StaticCache, keep: torch.Tensor, length: int) -> StaticCache:
        """The rows ``keep`` of ``cache`` copied into the pooled cache of their batch size."""
        smaller = self.cache(len(keep), length)
        for src, dst in zip(cache.layers, smaller.layers, strict=True):
            if not dst.is_initialized:  # allocation reads only the shapes, dtype and device of its arguments
                rows = (len(keep), -1, -1, -1)
                dst.lazy_initialization(src.keys[:1].expand(*rows), src.values[:1].expand(*rows))
            dst.keys.copy_(src.keys.index_select(0, keep))
            dst.values.copy_(src.values.index_select(0, keep))
            dst.cumulative_length.copy_(src.cumulative_length)
        return smaller


def decoder_for(model, compile: bool) -> StaticDecoder:
    """The model's decoder: kept on the model, so its caches and compiled step live exactly as long."""
    per_model = model.__dict__.setdefault("_runner_static_decoders", {})
    if compile not in per_model:
        per_model[compile] = StaticDecoder(model, compile)
    return per_model[compile]
