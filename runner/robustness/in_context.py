"""In-context relearning: show k forget-set question/answer pairs before the question (no training).

The examples are other forget rows, never the evaluated one, drawn per question with the job's
seed, each rendered in the model's own prompt format and closed with its end-of-sequence token,
as a finished chat turn; the evaluated question follows in the same format. ``k`` as a list gives
the curve of forget ROUGE against the number of examples.
"""

from __future__ import annotations

import random

from runner.errors import ConfigError
from runner.robustness.base import ProbeContext, QAProbe, answer_rouge, as_list, evaluated

SEPARATOR = "\n"  # between a closed turn and the next (what chat templates put after their end token)


class InContextAttack(QAProbe):
    """``k``: examples shown before each question (one count or a list)."""

    def __init__(self, name: str = "in_context", k=(1, 2, 4), questions: int = 20):
        super().__init__(name, questions)
        self.k = as_list(k)
        for n in self.k:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(self.key("k"), f"{n!r} is not a count of examples", "use whole numbers >= 1")

    def check_data(self, rows, tokenizer, fmt, max_length) -> None:
        if max(self.k) > len(rows) - 1:
            raise ConfigError(
                self.key("k"),
                f"k={max(self.k)} examples, but the forget set has {len(rows)} rows and the evaluated one is never shown",
                f"use k <= {len(rows) - 1}",
            )

    def run(self, ctx: ProbeContext) -> list[dict]:
        rows = evaluated(ctx.rows, self.questions)
        points = []
        for k in self.k:
            prompts = [context_prompt(ctx, i, k)[0] for i in range(len(rows))]
            scores = answer_rouge(ctx, prompts, [r["answer"] for r in rows], f"in-context k={k} ({ctx.model_kind})")
            points.append({"setting": f"k={k}", "strength": k, "value": sum(scores) / len(scores)})
        return points


def draw_examples(n_rows: int, index: int, k: int, seed: int) -> list[int]:
    """``k`` row indices other than ``index``, drawn with ``seed`` (the same question always gets the same ones)."""
    others = [i for i in range(n_rows) if i != index]
    return random.Random(seed * 1_000_003 + index).sample(others, k)


def context_prompt(ctx: ProbeContext, index: int, k: int) -> tuple[list[int], list[int]]:
    """Token ids of ``k`` example turns then row ``index``'s question, and the example rows' indices."""
    chosen = draw_examples(len(ctx.rows), index, k, ctx.seed)
    eos = ctx.tokenizer.eos_token or ""
    shots = "".join(ctx.fmt.render(ctx.rows[i]["question"], ctx.rows[i]["answer"]) + eos + SEPARATOR for i in chosen)
    row = ctx.rows[index]
    question = ctx.fmt.question.format(question=row["question"])
    ids = ctx.tokenizer(shots + question, add_special_tokens=ctx.fmt.special_tokens)["input_ids"]
    return ids, chosen
