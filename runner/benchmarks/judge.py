"""A judge model that reads a reasoning trace and says whether it reveals the correct answer (yes / no).

Config (``benchmark.reasoning.judge``): ``model``, a model node like ``conf/model/*.yaml`` (choose one with
``+model@benchmark.reasoning.judge.model=qwen2.5-1.5b-instruct``, or give ``{source: hub, id: ...}``; a
local directory is a hub ``id``), ``template`` (the prompt; ``{question}``, ``{choices}``, ``{answer}``,
``{trace}`` are filled in), ``max_new_tokens`` and ``batch_size``. The prompt goes inside the judge
model's ``prompt.question`` format when the node has one, else its tokenizer's chat template, else as
it is. Greedy, through the shared generation path (batched by length, tokens/s on the progress bar).

The judge is loaded for each evaluation and released afterwards, so it never sits in memory next to
the model being unlearned. Verdicts are parsed by ``parse_verdict``; the unparseable ones are counted,
never guessed.
"""

from __future__ import annotations

import gc
import re
from pathlib import Path

import torch
from omegaconf import OmegaConf

from runner import distributed
from runner.data.qa import PromptFormat
from runner.decoding.generate import greedy_run
from runner.errors import ConfigError
from runner.options import Range, check_number

_WORD = re.compile(r"\b(yes|no)\b")
TEMPLATE_FIELDS = ("question", "choices", "answer", "trace")


def parse_verdict(text: str) -> bool | None:
    """True for yes, False for no, None when unparseable.

    The first word decides when it is yes or no ("Yes.", "**No**, because ..."); otherwise the text must
    hold only one of the two words ("The answer is yes"); both or neither is unparseable.
    """
    words = _WORD.findall(text.lower())
    first = re.match(r"\W*(yes|no)\b", text.lower())
    if first:
        return first.group(1) == "yes"
    if len(set(words)) == 1:
        return words[0] == "yes"
    return None


def check(cfg, key: str) -> None:
    """The judge's options, before any model is loaded."""
    if cfg.get("model") is None:
        return
    if OmegaConf.select(cfg.model, "source") is None:
        raise ConfigError(
            f"{key}.model.source",
            "the judge model node names no source",
            f"choose one with +model@{key}.model=NAME (a conf/model option), or give {{source: hub, id: HUB_ID}}",
        )
    template = str(cfg.template)
    try:
        template.format(**{f: "" for f in TEMPLATE_FIELDS})
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{key}.template",
            f"does not format ({exc.__class__.__name__}: {exc})",
            f"use only the fields {{{'}, {'.join(TEMPLATE_FIELDS)}}} (double other braces)",
        ) from exc
    if "{trace}" not in template:
        raise ConfigError(f"{key}.template", "has no {trace} field: the judge would not see the trace", "add {trace}")
    for name in ("max_new_tokens", "batch_size"):
        check_number(f"{key}.{name}", cfg.get(name), Range(low=1, whole=True, example="8"))


def _model_node(cfg):
    """The judge's model node with the defaults a hand-written ``{source, id}`` node leaves out."""
    defaults = {"dtype": "bfloat16" if torch.cuda.is_available() else "float32", "trust_remote_code": False}
    return OmegaConf.merge(defaults, cfg.model)


def prompt_ids(tokenizer, model_cfg, text: str) -> list[int]:
    prompt = model_cfg.get("prompt")
    if prompt is not None:
        fmt = PromptFormat.from_cfg(prompt)
        return tokenizer(fmt.question.format(question=text), add_special_tokens=fmt.special_tokens)["input_ids"]
    if getattr(tokenizer, "chat_template", None):
        # rendered, then tokenised without extra specials: the template writes its own (BOS and turn markers),
        # and the text form does not depend on what apply_chat_template returns when it tokenises
        chat = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        return tokenizer(chat, add_special_tokens=False)["input_ids"]
    return tokenizer(text)["input_ids"]


def run_judge(cfg, prompts: list[str], cache_dir: Path | None, precision: str, key: str) -> list[str]:
    """The judge model's greedy reply to each prompt (already filled templates), in order."""
    from runner.models import load_model

    node = _model_node(cfg)
    if cache_dir is None and node.source != "hub":
        raise ConfigError(f"{key}.model.source", "a tiny or GGUF judge needs the job's cache", "use a hub judge")
    model, tokenizer = load_model(node, cache_dir)
    try:
        model.to(distributed.device())
        ids = [prompt_ids(tokenizer, node, p) for p in prompts]
        run = greedy_run(model, tokenizer, ids, int(cfg.max_new_tokens), int(cfg.batch_size), precision, desc="judge")
        return [tokenizer.decode(samples[0].ids, skip_special_tokens=True).strip() for samples in run.outputs]
    finally:  # never keep the judge next to the model being unlearned
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
