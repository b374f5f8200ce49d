"""Per-example quantities under theta_0 that scoring selectors rank by: gradient norms and mean hidden states.

Both make one batched pass over the forget set, shortest examples first so batches pad little.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from runner import row_gradients
from runner.data.qa import IGNORE, collate_qa
from runner.errors import ConfigError
from runner.scoring import autocast, unwrap


def _by_length(encoded: list[dict]) -> list[int]:
    return sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))


def per_example_grad_norms(
    model: torch.nn.Module, encoded: list[dict], pad_id: int, batch_size: int, precision: str
) -> np.ndarray:
    """||grad_theta l_i(theta)|| over the trainable parameters, l_i the mean answer NLL of example i.

    A batch shares one forward and one backward; each example's gradient norm comes from module
    hooks (``runner.row_gradients``: one module's per-example gradients at a time), or for a model
    those rules do not cover from ``vmap(grad(...))`` (memory: ``batch_size`` gradient copies of the
    trainable parameters). Right padding needs no attention mask under a causal mask (no real
    token attends to a later pad), which also keeps the mask construction's data-dependent
    branches out of vmap; the math attention kernel has a batching rule where the fused ones have none.
    """
    m = unwrap(model)
    device = next(m.parameters()).device
    originals = {n: p for n, p in m.named_parameters() if p.requires_grad}
    trainable = {n: p.detach() for n, p in originals.items()}
    if not trainable:
        raise ConfigError("model.trainable_layers", "no parameter is trainable", "leave some layers trainable")

    def batch_losses(call, batch):
        """Each row's mean answer NLL; ``call`` runs the model (with the hooks' or vmap's parameters)."""
        logits = call(input_ids=batch["input_ids"], use_cache=False).logits[:, :-1]
        targets = batch["labels"][:, 1:]
        scored = targets != IGNORE
        nll = torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1), targets.clamp(min=0).flatten(), reduction="none"
        ).view_as(targets)
        return (nll * scored).sum(1) / scored.sum(1).clamp(min=1)

    def example_loss(params, input_ids, labels):
        def call(**kwargs):
            return functional_call(m, params, args=(), kwargs=kwargs)

        return batch_losses(call, {"input_ids": input_ids[None], "labels": labels[None]})[0]

    per_batch = vmap(grad(example_loss), in_dims=(None, 0, 0))
    hooks = row_gradients.supported(m)
    order = _by_length(encoded)
    norms = np.zeros(len(encoded), dtype=np.float64)
    was_training = m.training
    m.eval()  # no dropout: the gradient of the model as it is
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="coreset gradnorm", unit="batch", leave=False):
            idx = order[start : start + batch_size]
            batch = collate_qa([encoded[i] for i in idx], pad_id)
            inputs = {"input_ids": batch["input_ids"].to(device), "labels": batch["labels"].to(device)}
            if hooks:
                try:
                    with autocast(precision, device):
                        per_tensor = row_gradients.row_gradient_norms(m, originals, batch_losses, inputs, [2.0])
                    norms[idx] = per_tensor[:, :, 0].square().sum(1).sqrt().numpy()
                    continue
                except row_gradients.Unsupported:
                    hooks = False
            with sdpa_kernel(SDPBackend.MATH), autocast(precision, device):
                grads = per_batch(trainable, inputs["input_ids"], inputs["labels"])
            squared = sum(g.float().pow(2).flatten(1).sum(1) for g in grads.values())
            norms[idx] = squared.sqrt().double().cpu().numpy()
            del grads
    finally:
        m.train(was_training)
    return norms


@torch.inference_mode()
def mean_hidden_states(model, encoded: list[dict], pad_id: int, batch_size: int, precision: str) -> np.ndarray:
    """(N, hidden) mean of the last layer's hidden states over each example's tokens."""
    m = unwrap(model)
    device = next(m.parameters()).device
    order = _by_length(encoded)
    out = None
    for start in tqdm(range(0, len(order), batch_size), desc="coreset embed", unit="batch", leave=False):
        idx = order[start : start + batch_size]
        batch = collate_qa([encoded[i] for i in idx], pad_id)
        mask = batch["attention_mask"].to(device)
        with autocast(precision, device):
            hidden = m.base_model(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state
        mean = (hidden.float() * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        if out is None:
            out = np.zeros((len(encoded), mean.shape[1]), dtype=np.float64)
        out[idx] = mean.double().cpu().numpy()
    return out
