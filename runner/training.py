"""The one trainer every stage uses: transformers' Trainer with the loss supplied by the caller.

Fine-tuning (TOFU target / retain models) passes the plain NLL; unlearning
passes ``method.loss`` on paired forget / retain batches. Seeding, gradient
accumulation, the learning-rate schedule, clipping and DeepSpeed (its config built
by the run's distributed strategy from the same settings, runner/distributed/) are the Trainer's.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import ProgressCallback

from runner.data.qa import collate_qa
from runner.distributed import SingleProcess, Strategy
from runner.errors import TrainingDiverged
from runner.heap import release_free_heap
from runner.options import SEED, Range
from runner.scoring import autocast, unwrap

# the shared trainer's settings (conf/train/default.yaml), as every training block holds them
TRAIN_RANGES = {
    "learning_rate": Range(low=0, low_open=True, example="1e-5"),
    "epochs": Range(low=0, low_open=True, example="1"),
    "batch_size": Range(low=1, whole=True, example="8"),
    "grad_accum": Range(low=1, whole=True, example="1"),
    "max_steps": Range(low=1, whole=True, optional=True, example="null (train for the epochs)"),
    "warmup_ratio": Range(low=0, high=1, optional=True, example="0.1"),
    "weight_decay": Range(low=0, optional=True, example="0.0"),
    "max_grad_norm": Range(low=0, optional=True, example="1.0 (0: no clipping)"),
    "seed": Range(low=0, high=SEED.high, whole=True, optional=True, example="0"),
}
log = logging.getLogger(__name__)
LossFn = Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict]]
# (model, batch, scale) -> (loss, terms), having added scale * (its update direction) to each p.grad
BackwardFn = Callable[[torch.nn.Module, dict, float], tuple[torch.Tensor, dict]]
# (model, batch) -> (part, terms) pairs whose parts sum to the loss (Method.loss_parts)
PartsFn = Callable[[torch.nn.Module, dict], Iterator[tuple[torch.Tensor, dict]]]


def backward_by_parts(parts_fn: PartsFn) -> BackwardFn:
    """Back-propagate each part of the loss before the next part's forward pass.

    The gradient is the same as one backward of the sum; the peak memory is that of the largest
    part's graph instead of all of them together (a forget and a retain pass: about half). On CPU
    the heap is trimmed once each later part's forward pass is done (runner/heap.py).
    """

    def backward(model, batch: dict, scale: float) -> tuple[torch.Tensor, dict]:
        total, terms = None, {}
        for i, (part, part_terms) in enumerate(parts_fn(model, batch)):
            if i and part.device.type == "cpu":
                # this part's forward pass has reused what it could of the previous part's freed
                # activations; give the rest back before the gradients pile up (runner/heap.py)
                release_free_heap()
            (part * scale).backward()
            total = part.detach() if total is None else total + part.detach()
            terms.update(part_terms)
        return total, terms

    return backward


class ListDataset(Dataset):
    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


class PairedDataset(Dataset):
    """Each forget example with a retain example drawn at random, a new draw each epoch.

    The draw is a function of (seed, epoch, forget position) alone, not of the order in
    which a process reads examples: every rank of a multi-process run pairs its own forget
    examples with their own retain draws (so retain batches differ across ranks), and the
    pairs are those of the one-process run with the same global batch.
    """

    def __init__(self, forget: list[dict], retain: list[dict], seed: int):
        self.forget, self.retain = forget, retain
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, i: int) -> dict:
        draw = random.Random(f"{self.seed}:{self.epoch}:{i}").randrange(len(self.retain))
        return {"forget": self.forget[i], "retain": self.retain[draw]}


def collate_pairs(pad_id: int):
    def collate(examples: list[dict]) -> dict:
        return {
            "forget": collate_qa([e["forget"] for e in examples], pad_id),
            "retain": collate_qa([e["retain"] for e in examples], pad_id),
        }

    return collate


def collate_single(pad_id: int):
    return lambda examples: collate_qa(examples, pad_id)


# what the Trainer logs about its schedule rather than the loss (kept by a tracker, not in results.json's terms)
SCHEDULE_KEYS = ("learning_rate", "epoch", "grad_norm")


class _LossTrainer(Trainer):
    def __init__(self, *args, loss_fn: LossFn, backward_fn: BackwardFn | None, stage: str, precision: str, **kwargs):
        super().__init__(*args, **kwargs)
        # our losses are means over their own tokens, never sums over `num_items_in_batch`:
        # let the Trainer divide them by the gradient-accumulation steps
        self.model_accepts_loss_kwargs = False
        self.loss_fn, self.backward_fn, self.stage, self.precision = loss_fn, backward_fn, stage, precision
        self._terms: dict[str, float] = {}

    def _check(self, loss: torch.Tensor, terms: dict) -> None:
        value = loss.detach().float().item()
        if not math.isfinite(value):
            raise TrainingDiverged(self.stage, self.state.global_step + 1, value)
        self._terms = terms

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # the losses call submodules directly (LM head on answer tokens only), which bypasses the
        # autocast that accelerate wraps around model.forward: apply it here
        with autocast(self.precision, self.args.device):
            loss, terms = self.loss_fn(model, inputs)
        self._check(loss, terms)
        return loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Methods that build their own update (BLUR) fill the gradients themselves."""
        if self.backward_fn is None:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        with autocast(self.precision, self.args.device):
            loss, terms = self.backward_fn(model, inputs, 1.0 / self.current_gradient_accumulation_steps)
        self._check(loss, terms)
        return loss.detach() / self.current_gradient_accumulation_steps

    def _get_grad_norm(self, model, grad_norm=None):
        """The Trainer's gradient norm (computed every step, clipped or not): a non-finite one is divergence."""
        value = super()._get_grad_norm(model, grad_norm=grad_norm)
        norm = float(value.item() if hasattr(value, "item") else value) if value is not None else None
        if norm is not None and not math.isfinite(norm):
            raise TrainingDiverged(self.stage, self.state.global_step + 1, norm, "gradient norm")
        return value

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs:  # add the method's own terms of the latest step
            logs.update({k: round(v, 4) for k, v in self._terms.items()})
        super().log(logs, *args, **kwargs)


class _StageProgress(ProgressCallback):
    """The Trainer's progress bar, labelled with the stage it counts (unlearn, finetune_target, distill ...)."""

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True, desc=self.stage, unit="step")
        self.current_step = 0


class _EpochToDataset(TrainerCallback):
    """Tells a dataset with ``set_epoch`` which epoch begins (accelerate's sampler keeps that to itself)."""

    def __init__(self, dataset):
        self.dataset, self.epoch = dataset, 0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(self.epoch)
        self.epoch += 1


class _Timing(TrainerCallback):
    def __init__(self):
        self.steps = 0
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.steps = state.global_step


def train(
    model: torch.nn.Module,
    dataset: Dataset,
    collate: Callable,
    loss_fn: LossFn,
    train_cfg,
    seed: int,
    precision: str,
    output_dir: Path,
    stage: str,
    backward_fn: BackwardFn | None = None,
    callbacks: list | None = None,
    strategy: Strategy | None = None,
    parts_fn: PartsFn | None = None,
) -> dict:
    """Run the Trainer; returns the numbers worth recording (steps, seconds, final loss).

    ``callbacks``: extra TrainerCallbacks (the tracker's per-step curves, see runner/output/trackers/base.py).
    ``strategy``: the job's distributed strategy (its DeepSpeed config, the model's state around
    training); None is one process, which refuses to run where several ranks were started.
    ``parts_fn``: the loss in parts (``Method.loss_parts``); in one process each part is
    back-propagated on its own (``backward_by_parts``). DeepSpeed, which owns the backward pass,
    gets their sum through ``loss_fn``.
    """
    strategy = strategy or SingleProcess()
    n_devices = max(1, torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1)
    per_step = train_cfg.batch_size * train_cfg.grad_accum * n_devices
    steps_per_epoch = max(1, math.ceil(len(dataset) / per_step))
    total_steps = train_cfg.get("max_steps") or steps_per_epoch * train_cfg.epochs
    precision = strategy.training_precision(precision)
    deepspeed = strategy.deepspeed_config(train_cfg, precision)
    if backward_fn is None and parts_fn is not None and deepspeed is None:
        backward_fn = backward_by_parts(parts_fn)
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=train_cfg.batch_size,
        gradient_accumulation_steps=train_cfg.grad_accum,
        num_train_epochs=train_cfg.epochs,
        max_steps=train_cfg.get("max_steps") or -1,
        learning_rate=train_cfg.learning_rate,
        lr_scheduler_type=train_cfg.lr_scheduler,
        warmup_steps=int(round(train_cfg.warmup_ratio * total_steps)),
        weight_decay=train_cfg.weight_decay,
        max_grad_norm=train_cfg.max_grad_norm,
        # fused AdamW: one kernel over all parameters, about 5x faster than the per-tensor loop that
        # adamw_torch runs on CPU (135M parameters: 0.5 s vs 2.5 s a step), no foreach temporaries
        optim="adamw_torch_fused",
        **_checkpointing_args(bool(train_cfg.get("gradient_checkpointing", False))),
        bf16=precision == "bf16",
        use_cpu=not torch.cuda.is_available(),
        seed=seed,
        data_seed=seed,
        # a tracker (W&B / TensorBoard) gets a point per step; the console a handful of lines
        logging_steps=1 if callbacks else max(1, total_steps // 5),
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
        deepspeed=deepspeed,  # None: one process, plain Trainer
        ddp_timeout=60 * strategy.timeout_minutes,
    )
    low_precision = {str(p.dtype) for p in model.parameters() if p.requires_grad and p.dtype != torch.float32}
    if low_precision and deepspeed is None:  # DeepSpeed keeps fp32 master weights itself
        log.warning(
            "%s: trainable weights are %s and AdamW updates them in place, so small steps round away; "
            "load model.dtype=float32 and keep precision=bf16 (autocast), or train under DeepSpeed bf16",
            stage,
            ", ".join(sorted(low_precision)),
        )
    timing = _Timing()
    trainer = _LossTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collate,
        loss_fn=loss_fn,
        backward_fn=backward_fn,
        stage=stage,
        precision=precision,
        callbacks=[timing, *(callbacks or [])],
    )
    if hasattr(dataset, "set_epoch"):
        trainer.add_callback(_EpochToDataset(dataset))
    if trainer.pop_callback(ProgressCallback) is not None:  # the bar, when shown, says which stage it counts
        trainer.add_callback(_StageProgress(stage))
    was_training = model.training
    before = strategy.before_training(model)
    start_norm = weight_norm(model)
    model.train()
    try:
        result = trainer.train()
    except BaseException as exc:  # the job ends: no collective gather that ranks still training would never join
        strategy.after_training(trainer, model, before, gather=False)
        if isinstance(exc, RuntimeError) and "overflow" in str(exc):  # e.g. AdamW's step size past float range
            raise TrainingDiverged(
                stage,
                trainer.state.global_step + 1,
                float("inf"),
                "optimizer step",
                text=f"the optimizer step overflowed ({exc})",
                fix="lower the learning rate",
            ) from exc
        raise
    finally:
        model.train(was_training)
        if train_cfg.get("gradient_checkpointing", False):  # the Trainer turned it on for this stage only
            unwrap(model).gradient_checkpointing_disable()
    strategy.after_training(trainer, model, before)  # DeepSpeed: whole, hook-free weights again
    _check_weights(train_cfg, stage, timing.steps, start_norm, weight_norm(model))
    seconds = time.perf_counter() - timing.start
    return {
        "steps": timing.steps,
        "seconds": round(seconds, 2),
        "train_loss": float(result.training_loss),
        "terms": logged_terms(trainer.state.log_history),
    }


def logged_terms(history: list[dict]) -> list[dict]:
    """The loss and the method's own terms at each logging step (``_LossTrainer.log`` adds them): what the console
    and a tracker showed, kept in results.json (``training.<stage>.terms``)."""
    kept = []
    for entry in history:
        if "loss" in entry and "step" in entry:
            numbers = {k: v for k, v in entry.items() if k not in SCHEDULE_KEYS and isinstance(v, (int, float))}
            kept.append({"step": int(entry["step"]), **{k: float(v) for k, v in numbers.items() if k != "step"}})
    return kept


def _checkpointing_args(enabled: bool) -> dict:
    """TrainingArguments for ``gradient_checkpointing`` (renamed activation checkpointing in later transformers 5.x).

    Non-reentrant: works with frozen layers below the trainable ones and with keyword inputs (packed batches).
    """
    new = "activation_checkpointing" in TrainingArguments.__dataclass_fields__
    name = "activation_checkpointing" if new else "gradient_checkpointing"
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False}}


def weight_norm(model: torch.nn.Module) -> float:
    """L2 norm of the trainable weights: per-parameter norms (float32, no float64 copy), summed in Python floats."""
    with torch.no_grad():
        norms = [
            torch.linalg.vector_norm(p.detach(), dtype=torch.float32).item()
            for p in model.parameters()
            if p.requires_grad
        ]
    return math.sqrt(sum(n * n for n in norms))


def _check_weights(train_cfg, stage: str, steps: int, start: float, end: float) -> None:
    """After a stage: non-finite weights (an optimizer step that blew up) are divergence, whatever the loss said;
    with ``max_weight_norm_ratio`` set (the unlearning stage's default: 10), so are weights whose norm grew past
    that multiple of its start, the mark of a learning rate so large that the model collapses with a finite loss."""
    if not math.isfinite(end):
        raise TrainingDiverged(stage, steps, end, "weight norm", text=f"the trained weights' norm is {end}")
    limit = train_cfg.get("max_weight_norm_ratio") if hasattr(train_cfg, "get") else None
    if limit and start > 0 and end > limit * start:
        raise TrainingDiverged(
            stage,
            steps,
            end / start,
            "weight norm ratio",
            text=f"the trained weights' norm grew {end / start:.3g}-fold (more than max_weight_norm_ratio={limit})",
            fix="lower the learning rate, or raise unlearn.max_weight_norm_ratio (null: no check)",
        )
