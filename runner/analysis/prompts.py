"""The prompt sets of trace detection (arXiv 2506.14003): questions whose answers show unlearning, and others.

Each set is a list of prompts ``{"id", "text"}``; ``id`` names the question (``tofu:12``), so a split by
question keeps every model's response to it on one side. The text is the user turn; the model's own
prompt format (``model.prompt.question``) wraps it at generation time.

- ``tofu`` (forget-relevant): the questions of a TOFU forget split, as they are.
- ``wmdp`` (forget-relevant): WMDP questions as ``Question: {q}\\nAnswer:`` (the paper's layout).
- ``mmlu`` (forget-irrelevant): ``{q}\\n{A. ..\\nB. ..}\\n\\nPlease provide your analysis, then give the final
  answer.\\n\\nAnalysis:`` (the paper's layout), the first ``per_subject`` questions of each subject.
- ``ultrachat`` (forget-irrelevant): the ``prompt`` column of ``HuggingFaceH4/ultrachat_200k`` train_sft,
  streamed from the hub (the project ships none of it): refused up front when the hub is switched off.
"""

from __future__ import annotations

import os
from itertools import islice

from runner.data.hub import from_hub
from runner.errors import ConfigError

RELEVANCE = {"tofu": "forget-relevant", "wmdp": "forget-relevant", "mmlu": "irrelevant", "ultrachat": "irrelevant"}
MMLU_TEMPLATE = "{question}\n{choices}\n\nPlease provide your analysis, then give the final answer.\n\nAnalysis:"
WMDP_TEMPLATE = "Question: {question}\nAnswer:"
ULTRACHAT = ("HuggingFaceH4/ultrachat_200k", "train_sft")
LETTERS = "ABCD"


def _head(rows: list, n) -> list:
    return rows if n is None else rows[: int(n)]


def _tofu(cfg) -> list[dict]:
    from runner.data import tofu

    split = str(cfg.get("split", "forget01"))
    if split not in tofu.FORGET_SPLITS:
        raise ConfigError(
            "analysis.prompts.tofu.split", f"`{split}` is not a TOFU forget split", f"use one of {tofu.FORGET_SPLITS}"
        )
    try:
        rows = tofu.load_config(split, str(cfg.get("source", "local"))).to_list()
    except ConfigError as exc:  # the loader names benchmark.source: this job reads it under analysis.prompts
        raise ConfigError(
            "analysis.prompts.tofu.source", str(exc), "local (the shipped forget01), hub, or a directory"
        ) from exc
    return [{"id": f"tofu:{i}", "text": r["question"]} for i, r in enumerate(_head(rows, cfg.get("n")))]


def _mmlu(cfg) -> list[dict]:
    from runner.data import mmlu

    source = str(cfg.get("source", "local"))
    out = []
    for subject in mmlu.resolve_subjects(cfg.get("subjects", "all"), source, "analysis.prompts.mmlu.subjects"):
        rows = mmlu.load_subject(subject, source, "analysis.prompts.mmlu.source")
        for i, r in enumerate(_head(rows, cfg.get("per_subject"))):
            choices = "\n".join(f"{letter}. {c}" for letter, c in zip(LETTERS, r["choices"], strict=True))
            text = MMLU_TEMPLATE.format(question=r["question"].strip(), choices=choices)
            out.append({"id": f"mmlu:{subject}:{i}", "text": text})
    return out


def _wmdp(cfg) -> list[dict]:
    from runner.benchmarks.wmdp import FETCH_HINT, QUESTIONS
    from runner.data import hub

    out = []
    for name in list(cfg.get("questions", ["bio", "cyber"])):
        if name not in QUESTIONS:
            raise ConfigError(
                "analysis.prompts.wmdp.questions", f"`{name}` is not a WMDP set", f"use {list(QUESTIONS)}"
            )
        rows = hub.load_split(
            str(cfg.get("source", "hub")), QUESTIONS[name], hub.MCQ, "analysis.prompts.wmdp.source", FETCH_HINT
        )
        for i, r in enumerate(_head(rows, cfg.get("n"))):
            out.append({"id": f"wmdp:{name}:{i}", "text": WMDP_TEMPLATE.format(question=r["question"].strip())})
    return out


def _ultrachat(cfg) -> list[dict]:
    if any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        raise ConfigError(
            "analysis.prompts.sets",
            "ultrachat prompts come from the hub (HuggingFaceH4/ultrachat_200k), which is switched off here "
            "(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)",
            "run with network, or leave ultrachat out of analysis.prompts.sets (e.g. [tofu,mmlu])",
        )
    from datasets import load_dataset

    n = int(cfg.get("n") or 200)
    rows = from_hub(  # streamed: the first n prompts, not the 200k-row split
        lambda: list(islice(load_dataset(ULTRACHAT[0], split=ULTRACHAT[1], streaming=True), n)),
        "analysis.prompts.sets",
        f"read {ULTRACHAT[0]} {ULTRACHAT[1]}",
        "run with network, or leave ultrachat out of analysis.prompts.sets",
    )
    bad = [i for i, r in enumerate(rows) if not isinstance(r.get("prompt"), str)]
    if bad or not rows:
        raise ConfigError("analysis.prompts.sets", f"{ULTRACHAT[0]} rows lack a `prompt` string", "check the data set")
    return [{"id": f"ultrachat:{i}", "text": r["prompt"]} for i, r in enumerate(rows)]


LOADERS = {"tofu": _tofu, "wmdp": _wmdp, "mmlu": _mmlu, "ultrachat": _ultrachat}


def load_sets(cfg) -> dict[str, list[dict]]:
    """The prompt sets ``cfg.sets`` names, each with its options under ``cfg.<name>``."""
    names = [str(s) for s in (cfg.get("sets") or [])]
    if not names:
        raise ConfigError(
            "analysis.prompts.sets", "no prompt set is named", f"e.g. [tofu,mmlu]; choices {list(LOADERS)}"
        )
    unknown = [s for s in names if s not in LOADERS]
    if unknown or len(set(names)) != len(names):
        raise ConfigError(
            "analysis.prompts.sets",
            f"{names} has unknown or repeated sets",
            f"name each of {list(LOADERS)} at most once",
        )
    out = {}
    for name in names:
        prompts = LOADERS[name](cfg.get(name) or {})
        if len(prompts) < 4:
            raise ConfigError(
                f"analysis.prompts.{name}", f"only {len(prompts)} prompts: too few to split by question", "use more"
            )
        out[name] = prompts
    return out
