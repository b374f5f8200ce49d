"""Words and tags as token ids, checked: a word that is not one token is a config error, never an unknown id."""

from __future__ import annotations

import logging

from runner.errors import ConfigError

log = logging.getLogger(__name__)


def _pieces(tokenizer, ids: list[int]) -> str:
    return " + ".join(repr(t) for t in tokenizer.convert_ids_to_tokens(ids))


def word_token_ids(tokenizer, words, key: str) -> dict[str, list[int]]:
    """``word -> token ids`` of the word as written and of its leading-space form (" Wait").

    Reflection words appear both at a line start ("Wait,") and after a space (" but"), which
    byte-level tokenizers (Qwen, Llama 3, SmolLM2) hold as different tokens. The word as
    written must be one token: otherwise ``key`` is a ConfigError naming the pieces. Its
    leading-space form is added when it is one token too (a warning says when it is not).
    """
    if isinstance(words, str) or not words:
        raise ConfigError(key, f"must be a non-empty list of words, got {words!r}", f"e.g. {key}=[wait,Wait,but]")
    out: dict[str, list[int]] = {}
    for word in map(str, words):
        bare = tokenizer.encode(word, add_special_tokens=False)
        if len(bare) != 1:
            raise ConfigError(
                key,
                f"`{word}` is not a single token in this tokenizer ({_pieces(tokenizer, bare) or 'no tokens'})",
                f"remove `{word}` from {key}, or give a word the tokenizer holds as one token",
            )
        ids = [bare[0]]
        spaced = tokenizer.encode(" " + word, add_special_tokens=False)
        if len(spaced) == 1:
            if spaced[0] not in ids:
                ids.append(spaced[0])
        else:
            log.warning(
                "%s: ` %s` is %s, not one token; only `%s` is used", key, word, _pieces(tokenizer, spaced), word
            )
        out[word] = ids
    return out


def tag_token_ids(tokenizer, tag: str, key: str) -> list[int]:
    """The token ids of a tag such as ``</think>`` (one id for reasoning models, where it is a special token)."""
    ids = tokenizer.encode(tag, add_special_tokens=False)
    if not ids:
        raise ConfigError(key, f"`{tag}` encodes to no tokens", "set the model's end-of-thinking tag (or null)")
    return ids
