"""Plain-text rows (``{"text"}``): corpora to unlearn or keep, scored on every token."""

from __future__ import annotations


def encode_text(tokenizer, text: str, max_length: int) -> dict:
    """Token ids of ``text`` (the tokenizer's special tokens included), truncated; every token is a label.

    The first token is never predicted (nothing precedes it), so the labels
    cover the whole text as far as a causal LM can score it.
    """
    ids = tokenizer(text, add_special_tokens=True)["input_ids"][:max_length]
    return {"input_ids": ids, "labels": list(ids)}


def chunk_texts(tokenizer, texts: list[str], max_tokens: int, limit: int | None = None) -> list[str]:
    """Split long texts into pieces of at most ``max_tokens`` tokens (decoded back to text), in order.

    MUSE trains on its corpora in fixed-length token windows; cutting the
    token ids and decoding keeps every piece within the window. Stops once
    ``limit`` pieces exist.
    """
    pieces: list[str] = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), max_tokens):
            piece = tokenizer.decode(ids[start : start + max_tokens]).strip()
            if piece:
                pieces.append(piece)
            if limit is not None and len(pieces) >= limit:
                return pieces
    return pieces
