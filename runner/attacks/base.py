"""The fine-tuning attack contract: fine-tune the unlearned model briefly, then see whether the forgotten knowledge returns.

An attack is a config node of ``conf/finetune_attack`` (``_target_`` plus its options) built by
``runner.components.build``; ``finetune_attack: null`` (``finetune_attack=none``) runs none. A task
supplies its training examples and its own metric; the shared part here trains (the shared
trainer on the answer NLL, ``tuning: full`` or ``lora``) and scores the task before and after,
so "the unlearned model still fine-tunes well" is visible too.
"""

from __future__ import annotations

import abc
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from runner.data.qa import PromptFormat, encode_qa
from runner.distributed import Strategy, is_main_process
from runner.errors import ConfigError
from runner.models import set_trainable
from runner.options import Range, check_number
from runner.scoring import mean_nll
from runner.training import TRAIN_RANGES, ListDataset, collate_single, train

log = logging.getLogger(__name__)
KEY = "finetune_attack"


@dataclass
class AttackContext:
    """What an attack works with: the unlearned model and the job's benchmark, seed and settings."""

    model: object
    tokenizer: object
    fmt: PromptFormat
    bench: object  # the job's benchmark (the relearning attack reads its forget set)
    pad_id: int
    precision: str
    eval_batch_size: int
    trainable_layers: int | None  # ``tuning: full`` trains the layers unlearning trained
    seed: int  # draws the training rows and seeds the trainer
    strategy: Strategy | None = None  # the job's distributed strategy; None: one process


class FinetuneAttack(abc.ABC):
    """A fine-tuning attack.

    ``name``: the option's name, recorded; ``train``: the trainer settings of the fine-tune;
    ``examples`` / ``eval_examples``: training rows and held-out rows of the task;
    ``max_length``: tokens per training example; ``tuning``: ``full`` (the model's trainable
    layers) or ``lora`` (adapters with the ``lora`` settings, merged into the weights afterwards
    so the attacked model is a plain model again).
    """

    metric = "task"  # the name of the task's own metric, recorded with its values
    option_ranges = {
        "examples": Range(low=1, whole=True, example="64"),
        "eval_examples": Range(low=1, whole=True, example="20"),
        "max_length": Range(low=1, whole=True, example="256"),
        **{f"train.{name}": allowed for name, allowed in TRAIN_RANGES.items()},
        "lora.r": Range(low=1, whole=True, example="8"),
        "lora.alpha": Range(low=0, low_open=True, example="16"),
        "lora.dropout": Range(low=0, high=1, high_open=True, example="0.0"),
    }

    def __init__(
        self,
        name: str,
        train: dict,
        examples: int = 64,
        eval_examples: int = 20,
        max_length: int = 256,
        tuning: str = "full",
        lora: dict | None = None,
    ):
        self.name = name
        if tuning not in ("full", "lora"):
            raise ConfigError(f"{KEY}.tuning", f"`{tuning}` is not a tuning mode", "use full or lora")
        self.train_cfg = OmegaConf.create(train)
        for name in ("learning_rate", "epochs", "batch_size", "grad_accum"):  # required, not only in range
            check_number(f"{KEY}.train.{name}", self.train_cfg.get(name), TRAIN_RANGES[name])
        self.examples, self.eval_examples, self.max_length = examples, eval_examples, max_length
        self.tuning, self.lora = tuning, dict(lora or {})

    # ---- what a task supplies ----------------------------------------------------------------

    @abc.abstractmethod
    def train_examples(self, ctx: AttackContext) -> list[dict]:
        """Encoded training examples (``input_ids``, ``labels``), drawn with ``ctx.seed``."""

    @abc.abstractmethod
    def task_score(self, ctx: AttackContext) -> float:
        """The attack task's own metric on its held-out rows (higher is better)."""

    def check_data(self) -> None:  # noqa: B027 - optional hook: most attacks' data ships with the project
        """Cheap check, at config validation, that the attack's data can be found."""

    def inputs(self) -> list:
        """The files (or hub splits) the attack reads, for the job key (runner/inputs.py); none of its own here."""
        return []

    def encode(self, ctx: AttackContext, rows: list[dict]) -> list[dict]:
        """QA rows as training / scoring examples, ``max_length`` tokens at most."""
        return [encode_qa(ctx.tokenizer, ctx.fmt, r["question"], r["answer"], self.max_length) for r in rows]

    def draw(self, ctx: AttackContext, rows: list[dict]) -> list[dict]:
        """``examples`` of ``rows`` drawn with the job's seed, encoded for training."""
        return self.encode(ctx, random.Random(ctx.seed).sample(rows, min(self.examples, len(rows))))

    # ---- the attack ----------------------------------------------------------------------------

    def run(self, ctx: AttackContext, output_dir: Path, callbacks: list | None = None) -> dict:
        """Fine-tune ``ctx.model`` in place; results.json's ``attack`` (the task metric before and after)."""
        examples = self.train_examples(ctx)
        # the task is scored by rank 0 only; other ranks join the training (its collectives) and nothing else
        score = self.task_score if is_main_process() else (lambda _ctx: None)
        before = score(ctx)
        model = ctx.model
        if self.tuning == "lora":
            peft_model = _attach_lora(model, self.lora)
            trained = peft_model.base_model.model  # the same model object, with LoRA layers inside
        else:
            set_trainable(model, ctx.trainable_layers)
            trained = model
        stats = train(
            trained,
            ListDataset(examples),
            collate_single(ctx.pad_id),
            lambda m, batch: (mean_nll(m, batch), {}),
            self.train_cfg,
            seed=ctx.seed,
            precision=ctx.precision,
            output_dir=output_dir,
            stage="attack",
            callbacks=callbacks,
            strategy=ctx.strategy,
        )
        if self.tuning == "lora":
            peft_model.merge_and_unload()  # writes W + BA into the model's own Linear layers
        after = score(ctx)
        log.info("attack %s: %s %s -> %s after %d steps", self.name, self.metric, before, after, stats["steps"])
        return {
            "name": self.name,
            "task_metric": self.metric,
            "task_before": before,
            "task_after": after,
            "n_train": len(examples),
            "tuning": self.tuning,
            "training": stats,
        }


def _attach_lora(model, lora: dict):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=int(lora.get("r", 8)),
        lora_alpha=float(lora.get("alpha", 16)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=lora.get("target_modules", "all-linear"),
        bias="none",
    )
    return get_peft_model(model, config)
