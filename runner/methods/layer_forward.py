"""The truncated forward RMU and its family train through: the hidden state at one decoder layer, the layers
above it never run, and (with the activation cache) the layers below a given block skipped."""

from __future__ import annotations

import torch

from runner.errors import ConfigError
from runner.models import decoder_layers
from runner.scoring import unwrap


class _StopForward(Exception):
    """Raised by the hook on layer l to end the forward pass there; carries the layer's output."""

    def __init__(self, output):
        super().__init__("forward stopped at the RMU layer")
        self.output = output


def check_layer(model, layer: int) -> int:
    depth = len(decoder_layers(unwrap(model)))
    if not 0 <= layer < depth:
        raise ConfigError(
            "method.layer",
            f"layer {layer} is outside the model's decoder layers 0..{depth - 1}",
            f"choose a layer index in 0..{depth - 1} (the paper uses 7 on 32-layer Zephyr-7B)",
        )
    return depth


def hidden_at_layer(model, batch: dict, layer: int) -> torch.Tensor:
    """Output hidden state (B, T, d) of decoder layer ``layer``; the layers above it never run.

    A forward hook on the layer raises a private exception that carries its
    output out of ``base_model``; the hook is removed whatever happens.
    """
    m = unwrap(model)
    check_layer(m, layer)

    def stop(module, args, output):
        raise _StopForward(output)

    handle = decoder_layers(m)[layer].register_forward_hook(stop)
    try:
        m.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    except _StopForward as captured:
        output = captured.output
    else:  # pragma: no cover - only if a model skips its own layers
        raise RuntimeError(f"decoder layer {layer} did not run in {type(m).__name__}.base_model")
    finally:
        handle.remove()
    return output[0] if isinstance(output, tuple) else output


class _Passthrough(torch.nn.Module):
    """Stands in for a frozen decoder layer whose output is already known."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def hidden_from_block(model, batch: dict, block_inputs: torch.Tensor, first: int, layer: int) -> torch.Tensor:
    """``hidden_at_layer``, with the input of decoder layer ``first`` given: layers below ``first`` are skipped.

    ``block_inputs`` (B, T, d) is what layer ``first`` receives; the layers
    below it are swapped for pass-throughs for the duration of the call (the
    model still builds its masks and position embeddings as usual).
    """
    layers = decoder_layers(unwrap(model))
    skipped = [layers[i] for i in range(first)]

    def inject(module, args, kwargs):
        if args:
            return (block_inputs, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": block_inputs}

    handle = layers[first].register_forward_pre_hook(inject, with_kwargs=True)
    try:
        for i in range(first):
            layers[i] = _Passthrough()
        return hidden_at_layer(model, batch, layer)
    finally:
        for i, original in enumerate(skipped):
            layers[i] = original
        handle.remove()


def pad_rows(rows: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Right-pad per-example (T_i, d) tensors to (B, T, d) matching the batch's padded length."""
    out = torch.zeros(len(rows), like.shape[1], rows[0].shape[-1], dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out.to(like.device)
