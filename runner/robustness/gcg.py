"""GCG adversarial suffixes (Zou et al., 2023, arXiv 2307.15043) against the forget answers.

``nanogcg`` pins transformers <= 4.47.1 and the runner needs transformers 5, so the step is
implemented here (``runner.robustness.gcg_step``): the gradient of the target loss with respect to a
one-hot encoding of the suffix ranks replacement tokens per position, ``search_width`` candidates
each swap one position for one of its ``top_k`` best tokens, all are scored in batches without
gradients, and the lowest loss becomes the next suffix. The target is the gold answer's first
``target_tokens`` tokens; the suffix sits at the end of the user's question, inside the prompt
format. ``mode: individual`` optimises one suffix per evaluated question; ``mode: universal`` one
suffix over ``train_questions`` other forget rows, scored on the evaluated (held-out) questions.
"""

from __future__ import annotations

from runner.errors import ConfigError
from runner.options import COUNT, check_number
from runner.robustness.base import ProbeContext, QAProbe, answer_rouge, as_list, evaluated, split_answer
from runner.robustness.gcg_step import GcgRow, optimise


class GcgAttack(QAProbe):
    """``steps``: optimisation steps (a list: the suffix is scored at each); ``suffix_length`` tokens, started as
    ``init`` repeated; ``search_width`` candidates per step, drawn from each position's ``top_k`` tokens and scored
    ``batch_size`` at a time; ``filter_ids``: drop candidates whose text does not tokenise back to themselves."""

    def __init__(
        self,
        name: str = "gcg",
        mode: str = "individual",
        steps=(10, 20),
        suffix_length: int = 10,
        init: str = "x",
        search_width: int = 64,
        top_k: int = 64,
        filter_ids: bool = True,
        batch_size: int = 32,
        target_tokens: int = 16,
        train_questions: int = 4,
        questions: int = 4,
    ):
        super().__init__(name, questions)
        if mode not in ("individual", "universal"):
            raise ConfigError(self.key("mode"), f"`{mode}` is not a GCG mode", "use individual or universal")
        self.steps = as_list(steps)
        for s in self.steps:
            if isinstance(s, bool) or not isinstance(s, int) or s < 1:
                raise ConfigError(self.key("steps"), f"{s!r} is not a step count", "use whole numbers >= 1")
        for option, value in (
            ("suffix_length", suffix_length),
            ("search_width", search_width),
            ("top_k", top_k),
            ("batch_size", batch_size),
            ("target_tokens", target_tokens),
            ("train_questions", train_questions),
        ):
            check_number(self.key(option), value, COUNT, "see conf/robustness_attack/gcg.yaml")
        self.mode, self.suffix_length, self.search_width, self.top_k = mode, suffix_length, search_width, top_k
        self.batch_size, self.target_tokens, self.train_questions = batch_size, target_tokens, train_questions
        self.init, self.filter_ids = str(init), bool(filter_ids)

    def check_data(self, rows, tokenizer, fmt, max_length) -> None:
        if not tokenizer(self.init, add_special_tokens=False)["input_ids"]:
            raise ConfigError(
                self.key("init"), f"{self.init!r} tokenises to nothing", "use a visible character, e.g. x"
            )
        if self.mode == "universal" and self.questions + self.train_questions > len(rows):
            raise ConfigError(
                self.key("train_questions"),
                f"{self.questions} held-out + {self.train_questions} training questions, but the forget set has {len(rows)}",
                f"use questions + train_questions <= {len(rows)}",
            )
        for i, r in enumerate(self.attacked_rows(rows) + self.training_rows(rows)):
            if not split_answer(tokenizer, fmt, r["question"], r["answer"], max_length)[1]:
                raise ConfigError(
                    self.key("target_tokens"),
                    f"the GCG target of forget row {i} ({r['question'][:60]!r}) tokenises to nothing: its answer is empty "
                    "or cut away by benchmark.max_length",
                    "raise benchmark.max_length, or leave that row out",
                )

    def attacked_rows(self, rows: list[dict]) -> list[dict]:
        return evaluated(rows, self.questions)

    def training_rows(self, rows: list[dict]) -> list[dict]:
        """The universal suffix's training questions: the forget rows after the evaluated ones (never scored)."""
        return rows[self.questions : self.questions + self.train_questions] if self.mode == "universal" else []

    def gcg_rows(self, ctx: ProbeContext, rows: list[dict]) -> list[GcgRow]:
        head, _, tail = ctx.fmt.question.partition("{question}")
        out = []
        for r in rows:
            answer = split_answer(ctx.tokenizer, ctx.fmt, r["question"], r["answer"], ctx.max_length)[1]
            before = ctx.tokenizer(head + r["question"] + " ", add_special_tokens=ctx.fmt.special_tokens)["input_ids"]
            after = ctx.tokenizer(tail, add_special_tokens=False)["input_ids"]
            out.append(GcgRow(before, after, answer[: self.target_tokens]))
        return out

    def settings(self) -> dict:
        return {
            "suffix_length": self.suffix_length,
            "search_width": self.search_width,
            "top_k": self.top_k,
            "batch_size": self.batch_size,
            "target_tokens": self.target_tokens,
        }

    def _scores(
        self, ctx: ProbeContext, rows: list[dict], gcg_rows: list[GcgRow], suffixes: list[list[int]]
    ) -> list[float]:
        """Each row's forget ROUGE with its suffix after the question."""
        prompts = [g.before + s + g.after for g, s in zip(gcg_rows, suffixes, strict=True)]
        return answer_rouge(ctx, prompts, [r["answer"] for r in rows], f"gcg ({ctx.model_kind})")

    def run(self, ctx: ProbeContext) -> list[dict]:
        init = ctx.tokenizer(self.init, add_special_tokens=False)["input_ids"][:1] * self.suffix_length
        rows = self.attacked_rows(ctx.rows)
        attacked = self.gcg_rows(ctx, rows)
        checkpoints = sorted(set(self.steps))
        if self.mode == "universal":
            train = self.gcg_rows(ctx, self.training_rows(ctx.rows))
            runs = [optimise(ctx, train, init, self, checkpoints)]
        else:
            runs = [optimise(ctx, [g], init, self, checkpoints) for g in attacked]
        points = []
        for step in checkpoints:
            # universal: the one suffix after every held-out question; individual: each question its own
            suffixes = [runs[0 if self.mode == "universal" else i].suffix_at[step] for i in range(len(rows))]
            scores = self._scores(ctx, rows, attacked, suffixes)
            value = sum(scores) / len(scores)
            point = {
                "setting": f"{self.mode}, {step} steps",
                "strength": step,
                "value": value,
                "mode": self.mode,
                "suffixes": [
                    ctx.tokenizer.decode(s) for s in ([suffixes[0]] if self.mode == "universal" else suffixes)
                ],
                # each suffix's own success: its question's (individual), the held-out mean (universal)
                "suffix_values": [value] if self.mode == "universal" else scores,
                "loss_start": sum(r.losses[0] for r in runs) / len(runs),
                "loss": sum(r.loss_at[step] for r in runs) / len(runs),
                "seconds_per_step": sum(r.seconds_per_step for r in runs) / len(runs),
                **self.settings(),
            }
            if self.mode == "universal":
                train_rows = self.training_rows(ctx.rows)
                train_scores = self._scores(ctx, train_rows, train, [runs[0].suffix_at[step]] * len(train_rows))
                point["train_value"] = sum(train_scores) / len(train_scores)
            points.append(point)
        return points
