"""The trained text classifier of trace detection: an encoder, mean pooling and a linear head, all fine-tuned.

The paper's recipe (arXiv 2506.14003, its release's defaults): AdamW at lr 9e-5 with weight decay 0.001, a
cosine schedule after a 10% linear warm-up, gradients clipped to norm 0.3, batches of 8, 3 epochs, cross
entropy over the models' labels. The encoder is any transformers model with a last hidden state: a hub
encoder (``bert-base-uncased``, ``gpt2``, an LLM) or the analysed runs' base model (its decoder stack).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from runner.analysis.hidden import body, pool


class MeanPoolClassifier(torch.nn.Module):
    def __init__(self, encoder, n_classes: int):
        super().__init__()
        self.encoder = body(encoder)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, n_classes)

    def forward(self, enc):
        out = self.encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return self.head(pool(out, enc).float())


def load_hub_encoder(name: str):
    """(encoder, tokenizer) of a hub id or directory; a tokenizer without padding pads with its end token."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return AutoModel.from_pretrained(name), tokenizer


def fit_predict(
    load_encoder, texts: list[str], y, train, test, cfg, device, seed: int, desc: str = "train classifier"
) -> np.ndarray:
    """Fine-tune a fresh encoder + head on ``texts[train]``, predict ``texts[test]``."""
    torch.manual_seed(seed)
    encoder, tokenizer = load_encoder()
    y = np.asarray(y)
    model = MeanPoolClassifier(encoder, int(y.max()) + 1).to(device).train()
    batch, epochs = int(cfg.batch_size), int(cfg.epochs)
    steps = epochs * math.ceil(len(train) / batch)
    optim = torch.optim.AdamW(model.parameters(), lr=float(cfg.learning_rate), weight_decay=float(cfg.weight_decay))
    warmup = int(float(cfg.warmup_ratio) * steps)

    def factor(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optim, factor)
    rng = np.random.default_rng(seed)

    def encode(rows):
        chunk = [texts[i] or (tokenizer.eos_token or " ") for i in rows]
        return tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=int(cfg.max_length)).to(
            device
        )

    bar = tqdm(total=steps, desc=desc, unit="step", leave=False)
    for _ in range(epochs):
        order = rng.permutation(np.asarray(train))
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            loss = torch.nn.functional.cross_entropy(model(encode(rows)), torch.as_tensor(y[rows], device=device))
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg.max_grad_norm))
            optim.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix_str(f"loss {loss.item():.3f}")
    bar.close()
    model.eval()
    preds = []
    with torch.inference_mode():
        for start in range(0, len(test), batch):
            preds += model(encode(np.asarray(test)[start : start + batch])).argmax(-1).tolist()
    return np.asarray(preds)
