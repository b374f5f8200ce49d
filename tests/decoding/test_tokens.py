"""Reflection words to token ids (runner/decoding/tokens.py)."""

from __future__ import annotations

import pytest

from runner.decoding.base import DecodingContext
from runner.decoding.strategies import (
    CyclicReflex,
)
from runner.decoding.tokens import word_token_ids
from runner.errors import ConfigError


class _Vocab:
    """A word-level tokenizer stand-in: known words are one token, anything else splits into letters."""

    def __init__(self, words):
        self.vocab = {w: i for i, w in enumerate(words)}

    def encode(self, text, add_special_tokens=False):
        if text in self.vocab:
            return [self.vocab[text]]
        return [self.vocab.setdefault(ch, len(self.vocab)) for ch in text]

    def convert_ids_to_tokens(self, ids):
        inverse = {i: w for w, i in self.vocab.items()}
        return [inverse[i] for i in ids]


def test_words_resolve_with_their_leading_space_forms_and_a_split_word_is_an_error():
    tok = _Vocab(["Wait", " Wait", "but"])
    assert word_token_ids(tok, ["Wait", "but"], "decoding.words") == {"Wait": [0, 1], "but": [2]}
    with pytest.raises(ConfigError, match=r"decoding\.words.*`Alternatively` is not a single token"):
        word_token_ids(tok, ["Wait", "Alternatively"], "decoding.words")


def test_smollm2_holds_every_reflection_word_and_its_space_form_as_one_token(smollm2):
    _, tokenizer = smollm2
    ids = CyclicReflex().check(DecodingContext(tokenizer))["words"]
    assert set(ids) == {"wait", "Wait", "but", "But", "Alternatively"}
    assert all(len(v) == 2 for v in ids.values())
    assert ids["Wait"] == [tokenizer.convert_tokens_to_ids("Wait"), tokenizer.convert_tokens_to_ids("ĠWait")]
