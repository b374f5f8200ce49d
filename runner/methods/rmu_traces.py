"""The reasoning-trace pieces RMU (``method.traces``) and R²MU share: the model's traces about the forget
documents, split into trained and held-out sets, and the held-out trace loss measured around the update."""

from __future__ import annotations

import logging

import torch

from runner.data.qa import collate_qa
from runner.methods.base import require_single_process
from runner.methods.layer_forward import hidden_at_layer
from runner.methods.reasoning_traces import (
    TraceSettings,
    generate_traces,
    holdout_split,
    reindex,
    trace_inputs,
    trace_prompts,
)
from runner.methods.rmu_losses import rmu_forget_loss
from runner.scoring import autocast, unwrap

log = logging.getLogger(__name__)


def trace_sets(settings: TraceSettings, data, method_name: str) -> tuple[list[dict], list[dict]]:
    """The model's traces about the forget documents (cached), split into trained and held-out inputs."""
    require_single_process(f"{method_name} with method.traces")
    if data.cache_dir is None or data.tokenizer is None or data.forget_rows is None:
        raise RuntimeError("method.traces needs the job's cache directory, tokenizer and forget rows")
    texts = [r.get("text") or r.get("question", "") + " " + r.get("answer", "") for r in data.forget_rows]
    think_start = getattr(data.fmt, "think_start", None)
    if think_start is None:
        log.info(
            "R²MU traces: the model has no start-of-thinking tag (model.prompt.think_start); the cue ends the prompt"
        )
    prompts = trace_prompts(data.tokenizer, texts, settings, think_start)
    identity = data.model_identity or {}
    continuations = generate_traces(
        data.model, data.tokenizer, prompts, settings, data.precision, data.cache_dir, identity
    )
    inputs = trace_inputs(data.tokenizer, continuations, settings, think_start)
    kept, held = holdout_split(len(inputs), settings.holdout, data.seed)
    return reindex([inputs[i] for i in kept]), reindex([inputs[i] for i in held])


@torch.no_grad()
def trace_mse(model, data, examples: list[dict], layer: int, control: torch.Tensor) -> float:
    """MSE(h_theta^(l)(x_trace), c * u) over every real token of the held-out trace inputs (one token-weighted
    mean, as the training losses); always the full forward, never the activation cache."""
    m = unwrap(model)
    device = next(m.parameters()).device
    was_training = m.training
    m.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, len(examples), data.eval_batch_size):
            chunk = [
                {k: v for k, v in e.items() if k != "index"} for e in examples[start : start + data.eval_batch_size]
            ]
            batch = {k: v.to(device) for k, v in collate_qa(chunk, data.pad_id).items()}
            with autocast(data.precision, device):
                hidden = hidden_at_layer(m, batch, layer)
            n = int(batch["attention_mask"].sum())
            total += rmu_forget_loss(hidden, batch["attention_mask"], control).item() * n
            count += n
    finally:
        m.train(was_training)
    return total / max(count, 1)
