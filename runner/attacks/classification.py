"""Benign fine-tunes on labelled text classification (SST-2, MRPC, AG News), the ILU paper's other attacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runner.attacks.base import KEY, AttackContext, FinetuneAttack
from runner.data.classification import TASKS, load_task_rows
from runner.data.hub import Split
from runner.errors import ConfigError
from runner.scoring import score_sequences


class ClassificationAttack(FinetuneAttack):
    """Fine-tune on a labelled text-classification set; accuracy by label scoring on its held-out split."""

    def __init__(
        self,
        *args,
        task: str,
        source: str = "hub",
        repo: str,
        config: str,
        train_split: str = "train",
        eval_split: str = "validation",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if task not in TASKS:
            raise ConfigError(f"{KEY}.task", f"unknown task `{task}`", f"use one of {sorted(TASKS)}")
        self.task, self.source, self.repo, self.config = task, str(source), repo, config
        self.train_split, self.eval_split = train_split, eval_split
        self.metric = f"{task}_accuracy"

    def check_data(self) -> None:
        if self.source == "hub":
            return
        for split in (self.train_split, self.eval_split):
            where = Split(self.repo, self.config, split)
            if not Path(self.source).expanduser().is_dir() or where.local_path(self.source) is None:
                raise ConfigError(
                    f"{KEY}.source",
                    f"{where} is not in `{self.source}` (expected {self.source}/{self.repo}/{self.config}/"
                    f"{split}.parquet or .jsonl)",
                    "download it on a machine with network (scripts/fetch_data.py), or use source=hub",
                )

    def inputs(self) -> list:
        from runner.data.hub import input_of

        return [
            input_of(self.source, Split(self.repo, self.config, s), f"{KEY}.source")
            for s in (self.train_split, self.eval_split)
        ]

    def _rows(self, split: str) -> list[dict]:
        return load_task_rows(self.task, self.source, self.repo, self.config, split, f"{KEY}.source")

    def train_examples(self, ctx: AttackContext) -> list[dict]:
        return self.draw(ctx, self._rows(self.train_split))

    def task_score(self, ctx: AttackContext) -> float:
        rows = self._rows(self.eval_split)[: self.eval_examples]
        labels = TASKS[self.task].labels
        # every (example, label word) pair, scored in one batched pass
        pairs = [{"question": r["question"], "answer": word} for r in rows for word in labels]
        nll = score_sequences(
            ctx.model, self.encode(ctx, pairs), ctx.pad_id, ctx.eval_batch_size, ctx.precision, self.task
        )[:, 0].reshape(len(rows), len(labels))
        predicted = nll.argmin(axis=1)
        return float(np.mean(predicted == np.array([r["label"] for r in rows])))
