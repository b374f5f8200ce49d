"""Fine-tuning attacks: fine-tune the unlearned model briefly, then see whether the forgotten knowledge returns.

The ILU paper's attacks (arXiv 2506.01339): GSM8K maths, SST-2 sentiment,
MRPC paraphrase, AG News topics, and relearning on a few forget examples.
The job evaluates the benchmark before (row "unlearned") and after (row
"attacked") the attack; the attack itself reports its own task metric before
and after, so "the unlearned model still fine-tunes well" is visible too:

- ``gsm8k``: exact match of the final number of the greedy solution, held-out test questions;
- ``sst2`` / ``mrpc`` / ``agnews``: accuracy by label scoring on the held-out split;
- ``relearn``: mean answer probability exp(-mean NLL) of the forget examples not relearned.

Training is the shared trainer (``runner.training.train``) on the answer NLL,
either of the model's trainable layers (``tuning: full``, the same layers as
unlearning: ``model.trainable_layers``) or of LoRA adapters (``tuning: lora``),
merged into the weights afterwards so the attacked model is a plain model again.
"""

from __future__ import annotations

import abc
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from runner import distributed
from runner.data import gsm8k
from runner.data.classification import TASKS, load_task_rows
from runner.data.hub import Split
from runner.data.qa import PromptFormat, encode_prompt, encode_qa
from runner.errors import ConfigError
from runner.models import set_trainable
from runner.scoring import greedy_generate, mean_nll, score_sequences
from runner.training import ListDataset, collate_single, train

log = logging.getLogger(__name__)
KEY = "finetune_attack"


@dataclass
class AttackContext:
    """What an attack works with: the unlearned model and the job's benchmark and settings."""

    model: object
    tokenizer: object
    fmt: PromptFormat
    bench: object
    pad_id: int
    precision: str
    eval_batch_size: int
    trainable_layers: int | None


def _count(value, key: str, fix: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{KEY}.{key}", f"must be a positive count, got {value!r}", fix)


class FinetuneAttack(abc.ABC):
    """Shared part: the training settings, full or LoRA tuning, and the before / after task metric."""

    metric = "task"

    def __init__(
        self,
        name: str,
        train: dict,
        examples: int = 64,
        eval_examples: int = 20,
        max_length: int = 256,
        tuning: str = "full",
        lora: dict | None = None,
        seed: int = 0,
    ):
        self.name = name
        _count(examples, "examples", f"set {KEY}.examples to the number of training rows")
        _count(eval_examples, "eval_examples", f"set {KEY}.eval_examples to the number of held-out rows")
        _count(max_length, "max_length", f"set {KEY}.max_length, e.g. 256")
        if tuning not in ("full", "lora"):
            raise ConfigError(f"{KEY}.tuning", f"`{tuning}` is not a tuning mode", "use full or lora")
        self.train_cfg = OmegaConf.create(train)
        lr = self.train_cfg.get("learning_rate")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
            raise ConfigError(f"{KEY}.train.learning_rate", f"must be a positive number, got {lr!r}", "e.g. 1e-5")
        for k in ("epochs", "batch_size", "grad_accum"):
            _count(self.train_cfg.get(k), f"train.{k}", f"set {KEY}.train.{k} to a positive count")
        _count(self.train_cfg.get("max_steps"), "train.max_steps", "null trains for train.epochs", allow_none=True)
        self.examples, self.eval_examples, self.max_length = examples, eval_examples, max_length
        self.tuning, self.lora, self.seed = tuning, dict(lora or {}), int(seed)

    # ---- what a task supplies ----------------------------------------------------------------

    @abc.abstractmethod
    def train_examples(self, ctx: AttackContext) -> list[dict]:
        """Encoded training examples (``input_ids``, ``labels``)."""

    @abc.abstractmethod
    def task_score(self, ctx: AttackContext) -> float:
        """The attack task's own metric on its held-out rows (higher is better)."""

    def check_data(self) -> None:  # noqa: B027 - optional hook: most attacks' data ships with the project
        """Cheap check, at config validation, that the attack's data can be found."""

    def inputs(self) -> list:
        """The files (or hub splits) the attack reads, for the job key (runner/inputs.py); none of its own here."""
        return []

    def _encode(self, ctx: AttackContext, rows: list[dict]) -> list[dict]:
        return [encode_qa(ctx.tokenizer, ctx.fmt, r["question"], r["answer"], self.max_length) for r in rows]

    # ---- the attack ----------------------------------------------------------------------------

    def run(self, ctx: AttackContext, output_dir: Path, callbacks: list | None = None) -> dict:
        examples = self.train_examples(ctx)
        # the task is scored by rank 0 only; other ranks join the training (its collectives) and nothing else
        score = self.task_score if distributed.is_main_process() else (lambda _ctx: None)
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
            seed=self.seed,
            precision=ctx.precision,
            output_dir=output_dir,
            stage="attack",
            callbacks=callbacks,
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


class Gsm8kAttack(FinetuneAttack):
    """Fine-tune on GSM8K solutions (train split); exact match of the final number on test questions."""

    metric = "gsm8k_exact_match"

    def __init__(self, *args, max_new_tokens: int = 256, **kwargs):
        super().__init__(*args, **kwargs)
        _count(max_new_tokens, "max_new_tokens", "e.g. 256 (a GSM8K solution is ~100-200 tokens)")
        self.max_new_tokens = max_new_tokens

    def inputs(self) -> list:
        from runner.inputs import Input

        return [Input.file(KEY, gsm8k.DATA_DIR / f"{split}.jsonl") for split in ("train", "test")]

    def train_examples(self, ctx):
        rows = gsm8k.load("train")
        return self._encode(ctx, random.Random(self.seed).sample(rows, min(self.examples, len(rows))))

    def task_score(self, ctx):
        rows = gsm8k.load("test")[: self.eval_examples]
        prompts = [encode_prompt(ctx.tokenizer, ctx.fmt, r["question"]) for r in rows]
        outputs = greedy_generate(
            ctx.model, ctx.tokenizer, prompts, self.max_new_tokens, ctx.eval_batch_size, ctx.precision, "gsm8k"
        )
        return float(np.mean([gsm8k.exact_match(o, r["answer"]) for o, r in zip(outputs, rows, strict=True)]))


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

    def train_examples(self, ctx):
        rows = self._rows(self.train_split)
        return self._encode(ctx, random.Random(self.seed).sample(rows, min(self.examples, len(rows))))

    def task_score(self, ctx):
        rows = self._rows(self.eval_split)[: self.eval_examples]
        labels = TASKS[self.task].labels
        # every (example, label word) pair, scored in one batched pass
        pairs = [{"question": r["question"], "answer": word} for r in rows for word in labels]
        nll = score_sequences(
            ctx.model, self._encode(ctx, pairs), ctx.pad_id, ctx.eval_batch_size, ctx.precision, self.task
        )[:, 0].reshape(len(rows), len(labels))
        predicted = nll.argmin(axis=1)
        return float(np.mean(predicted == np.array([r["label"] for r in rows])))


class RelearnAttack(FinetuneAttack):
    """Fine-tune on a few forget examples; probability of the forget examples that were not relearned."""

    metric = "relearn_heldout_prob"

    def _split(self, ctx) -> tuple[list[dict], list[dict]]:
        rows = list(ctx.bench.forget_rows)  # the whole forget set, whatever coreset unlearning used
        ids = list(range(len(rows)))
        random.Random(self.seed).shuffle(ids)
        chosen = set(ids[: self.examples])
        relearn = [rows[i] for i in sorted(chosen)]
        heldout = [rows[i] for i in range(len(rows)) if i not in chosen][: self.eval_examples]
        return relearn, heldout or relearn  # all relearned: score what was relearned

    def train_examples(self, ctx):
        return ctx.bench.encode(self._split(ctx)[0])

    def task_score(self, ctx):
        encoded = ctx.bench.encode(self._split(ctx)[1])
        sums = score_sequences(ctx.model, encoded, ctx.pad_id, ctx.eval_batch_size, ctx.precision, "relearn eval")
        return float(np.mean(np.exp(-sums[:, 0] / np.maximum(sums[:, 1], 1))))


# ---- the stage ---------------------------------------------------------------------------------


def build_attack(attack_cfg: DictConfig) -> FinetuneAttack:
    """The attack named by ``finetune_attack._target_``, its keys as constructor arguments (checked there)."""
    if "_target_" not in attack_cfg:
        raise ConfigError(
            f"{KEY}._target_",
            f"attack `{attack_cfg.get('name')}` has no _target_",
            "choose an attack: finetune_attack=gsm8k|relearn|sst2|mrpc|agnews",
        )
    kwargs = OmegaConf.to_container(attack_cfg, resolve=True)
    cls = get_class(kwargs.pop("_target_"))
    try:
        return cls(**kwargs)
    except TypeError as exc:  # an unknown or missing key
        raise ConfigError(
            KEY, str(exc), f"see conf/finetune_attack/{attack_cfg.get('name')}.yaml for the keys"
        ) from exc


def check_config(cfg: DictConfig) -> None:
    """Build the attack (its constructor checks the options) and look for its data, before any training."""
    if cfg.finetune_attack.name != "none":
        build_attack(cfg.finetune_attack).check_data()


def run_attack(cfg: DictConfig, model, tokenizer, bench, output_dir: Path, callbacks: list | None = None) -> dict:
    """Fine-tune the unlearned ``model`` in place as ``cfg.finetune_attack`` says; results.json's ``attack``."""
    ctx = AttackContext(
        model=model,
        tokenizer=tokenizer,
        fmt=PromptFormat.from_cfg(cfg.model.prompt),
        bench=bench,
        pad_id=tokenizer.pad_token_id,
        precision=cfg.precision,
        eval_batch_size=cfg.eval.batch_size,
        trainable_layers=cfg.model.trainable_layers,
    )
    return build_attack(cfg.finetune_attack).run(ctx, Path(output_dir), callbacks)
