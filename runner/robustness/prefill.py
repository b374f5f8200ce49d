"""Prefilling attack: force the first tokens of the gold answer, let the model finish greedily.

A model that only learned to refuse or derail at the start of an answer continues correctly once
the start is given. The forced tokens are the gold answer's own, tokenised as the benchmark
tokenises the row; the continuation is scored with ROUGE-L recall against the rest of the gold
answer (the forced words would otherwise count as recalled), so a prefix of 0 tokens is the plain
forget ROUGE.
"""

from __future__ import annotations

import math

from runner.errors import ConfigError
from runner.robustness.base import UNCAPPED, ProbeContext, QAProbe, answer_rouge, as_list, evaluated, split_answer


class PrefillAttack(QAProbe):
    """``tokens``: answer tokens forced (one count or a list); or ``fraction``: that share of each answer's tokens,
    rounded down (one value or a list, each in [0, 1)). Exactly one of the two."""

    def __init__(self, name: str = "prefill", tokens=None, fraction=None, questions: int = 20):
        super().__init__(name, questions)
        if (tokens is None) == (fraction is None):
            raise ConfigError(self.key("tokens"), "give exactly one of tokens and fraction", "e.g. tokens: [2, 4, 8]")
        self.tokens = None if tokens is None else as_list(tokens)
        self.fraction = None if fraction is None else as_list(fraction)
        for n in self.tokens or []:
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ConfigError(self.key("tokens"), f"{n!r} is not a token count", "use whole numbers >= 0")
        for f in self.fraction or []:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
                raise ConfigError(self.key("fraction"), f"{f!r} is not in [0, 1)", "e.g. fraction: [0.25, 0.5]")

    def settings(self) -> list:
        return self.tokens if self.tokens is not None else self.fraction

    def forced(self, setting, n_answer: int) -> int:
        """How many answer tokens ``setting`` forces on an answer of ``n_answer`` tokens."""
        return setting if self.tokens is not None else math.floor(setting * n_answer)

    def check_data(self, rows, tokenizer, fmt, max_length) -> None:
        """Each forced prefix leaves at least one answer token to generate."""
        if self.tokens is None:
            return
        for i, r in enumerate(evaluated(rows, self.questions)):
            n_answer = len(split_answer(tokenizer, fmt, r["question"], r["answer"], UNCAPPED)[1])
            longest = max(self.tokens)
            if longest >= n_answer:
                raise ConfigError(
                    self.key("tokens"),
                    f"{longest} forced tokens is the whole answer of forget row {i} ({r['question'][:60]!r}: "
                    f"{n_answer} answer tokens), so nothing is left to recover",
                    f"use at most {n_answer - 1} tokens, or fraction: [...] (a share of each answer)",
                )

    def prompts(self, ctx: ProbeContext, setting) -> tuple[list[list[int]], list[str]]:
        """Prompt + forced answer tokens for each evaluated row, and the rest of each gold answer as text."""
        prompts, rests = [], []
        for r in evaluated(ctx.rows, self.questions):
            # the whole answer, not cut at max_length: the reference is the rest of the gold answer, all of it
            prompt, answer = split_answer(ctx.tokenizer, ctx.fmt, r["question"], r["answer"], UNCAPPED)
            n = self.forced(setting, len(answer))
            prompts.append(prompt + answer[:n])
            rests.append(r["answer"] if n == 0 else ctx.tokenizer.decode(answer[n:], skip_special_tokens=True).strip())
        return prompts, rests

    def run(self, ctx: ProbeContext) -> list[dict]:
        points = []
        for setting in self.settings():
            prompts, rests = self.prompts(ctx, setting)
            scores = answer_rouge(ctx, prompts, rests, f"prefill {setting} ({ctx.model_kind})")
            label = f"{setting} tokens" if self.tokens is not None else f"{setting:.0%} of the answer"
            points.append({"setting": label, "strength": setting, "value": sum(scores) / len(scores)})
        return points
