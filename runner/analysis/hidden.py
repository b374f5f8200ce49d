"""Hidden states for trace detection: a model's activations on its own responses, and mean-pooled text features.

- ``activations``: each model is run on prompt + *its own* response (the input it produced), and at every
  layer (embeddings = 0, ..., the last layer, whose hidden state transformers returns after the final norm)
  two vectors are kept: the last token's and the mean over the response tokens (the last prompt token's
  where the response is empty).
- ``mean_pooled``: an encoder's last hidden state averaged over the text's tokens (padding excluded), the
  features of the frozen-encoder text classifier.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from runner.data.qa import pad_sequences
from runner.scoring import autocast, unwrap


@torch.inference_mode()
def activations(
    model, rows: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int, precision: str, desc: str
):
    """(last, mean): float32 arrays (rows, layers + 1, hidden) for ``rows`` = (prompt ids, response ids)."""
    m = unwrap(model)
    device = next(m.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1]))
    last = mean = None
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        idx = order[start : start + batch_size]
        seqs = [rows[i][0] + rows[i][1] for i in idx]
        ids = pad_sequences(seqs, pad_id).to(device)  # right padding: positions match the unpadded sequence
        mask = pad_sequences([[1] * len(s) for s in seqs], 0).to(device)
        with autocast(precision, device):
            hidden = m(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        stack = torch.stack(hidden, dim=1).float()  # (batch, layers + 1, time, d)
        if last is None:
            shape = (len(rows), stack.shape[1], stack.shape[3])
            last, mean = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        for b, i in enumerate(idx):
            n_prompt, n_all = len(rows[i][0]), len(seqs[b])
            last[i] = stack[b, :, n_all - 1].cpu().numpy()
            first = n_prompt if n_all > n_prompt else n_all - 1
            mean[i] = stack[b, :, first:n_all].mean(dim=1).cpu().numpy()
    return last, mean


@torch.inference_mode()
def mean_pooled(encoder, tokenizer, texts: list[str], batch_size: int, precision: str, max_length: int, desc: str):
    """(texts, hidden) float32: the encoder's last hidden state averaged over each text's tokens."""
    m = unwrap(encoder)
    device = next(m.parameters()).device
    out = None
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", leave=False):
        chunk = [t if t else (tokenizer.eos_token or " ") for t in texts[start : start + batch_size]]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=max_length).to(device)
        with autocast(precision, device):
            pooled = pool(body(m)(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]), enc)
        if out is None:
            out = np.zeros((len(texts), pooled.shape[1]), np.float32)
        out[start : start + len(chunk)] = pooled.float().cpu().numpy()
    return out


def body(model):
    """The encoder part: a causal LM's decoder stack (last hidden state after its final norm), else the model."""
    return getattr(model, "base_model", model)


def pool(output, enc) -> torch.Tensor:
    """Mean of the last hidden state over the non-padding tokens."""
    hidden = output.last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
