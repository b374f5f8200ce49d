"""Relearning: fine-tune the unlearned model on a few forget examples and see the others come back."""

from __future__ import annotations

import random

import numpy as np

from runner.attacks.base import AttackContext, FinetuneAttack
from runner.scoring import score_sequences


class RelearnAttack(FinetuneAttack):
    """Fine-tune on a few forget examples; probability of the forget examples that were not relearned."""

    metric = "relearn_heldout_prob"

    def _split(self, ctx: AttackContext) -> tuple[list[dict], list[dict]]:
        rows = list(ctx.bench.forget_rows)  # the whole forget set, whatever coreset unlearning used
        ids = list(range(len(rows)))
        random.Random(ctx.seed).shuffle(ids)
        chosen = set(ids[: self.examples])
        relearn = [rows[i] for i in sorted(chosen)]
        heldout = [rows[i] for i in range(len(rows)) if i not in chosen][: self.eval_examples]
        return relearn, heldout or relearn  # all relearned: score what was relearned

    def train_examples(self, ctx: AttackContext) -> list[dict]:
        return ctx.bench.encode(self._split(ctx)[0])

    def task_score(self, ctx: AttackContext) -> float:
        encoded = ctx.bench.encode(self._split(ctx)[1])
        sums = score_sequences(ctx.model, encoded, ctx.pad_id, ctx.eval_batch_size, ctx.precision, "relearn eval")
        return float(np.mean(np.exp(-sums[:, 0] / np.maximum(sums[:, 1], 1))))
