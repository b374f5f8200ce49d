"""Each model's greedy responses to a prompt set, generated once and kept in the cache.

Generation is the costly part of trace detection (the paper: up to 1,024 new tokens per response), and it
is deterministic: greedy, with a repetition penalty. So the responses of one model to one prompt set under
one set of settings are a content-addressed cache entry, ``<cache>/responses/<key>.json``, written
atomically; the key covers the model's weights (base identity plus a digest of the run's saved weights),
the prompt format and token ids, and the generation settings and precision. A second analysis of the same
models reads them back and generates nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from runner.cache import content_key, write_json_atomic
from runner.cache_schema import RESPONSES, count_problem, read_checked, set_aside_file
from runner.data.qa import encode_prompt
from runner.decoding.generate import greedy_run

log = logging.getLogger(__name__)
KIND = "responses"


def prompt_ids(tokenizer, fmt, prompts: list[dict]) -> list[list[int]]:
    """The token ids the model sees: each prompt's text in the model's own prompt format."""
    return [encode_prompt(tokenizer, fmt, p["text"]) for p in prompts]


def cache_key(model_identity: dict, ids: list[list[int]], settings: dict, precision: str) -> str:
    return content_key(
        {"model": model_identity, "prompts": content_key(ids), "settings": settings, "precision": precision}
    )


def responses(
    model, tokenizer, ids: list[list[int]], settings: dict, precision: str, cache_dir: Path, identity: dict, desc: str
) -> tuple[list[dict], dict]:
    """(per prompt ``{"ids", "text"}``, how they were obtained) from the cache, else by generating them.

    ``settings``: ``max_new_tokens``, ``repetition_penalty``, ``batch_size``; the batch size is left out of
    the key (greedy results do not depend on it, bar float noise in padded batches).
    """
    keyed = {k: v for k, v in settings.items() if k != "batch_size"}
    key = cache_key(identity, ids, keyed, precision)
    path = Path(cache_dir) / KIND / f"{key}.json"
    if path.exists():  # trusted only with one response (token ids and text) per prompt
        stored, problem = read_checked(
            path, RESPONSES, lambda v: count_problem("responses", len(v["responses"]), len(ids))
        )
        if problem is None:
            log.info("cache hit: %s responses (%s)", desc, path)
            return stored["responses"], {"key": key, "cached": True, **stored["stats"]}
        set_aside_file(path, f"{desc} responses", problem)
    sizes = (int(settings["max_new_tokens"]), int(settings["batch_size"]))
    run = greedy_run(
        model, tokenizer, ids, *sizes, precision, desc=desc, repetition_penalty=float(settings["repetition_penalty"])
    )
    out = [{"ids": s[0].ids, "text": tokenizer.decode(s[0].ids, skip_special_tokens=True).strip()} for s in run.outputs]
    stats = dict(run.stats)
    try:  # the cache only spares the next analysis the generation: a full or read-only one must not fail this
        write_json_atomic(path, {"settings": keyed, "precision": precision, "responses": out, "stats": stats})
    except OSError as exc:
        log.warning("could not store %s responses in the cache (%s): %s", desc, exc.strerror or exc, path)
    return out, {"key": key, "cached": False, **stats}
