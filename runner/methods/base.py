"""The contract of an unlearning method, and the shape most methods share.

A method is a loss, not a trainer (DESIGN.md). The unlearning stage (``runner.unlearn``) calls,
in this order:

1. ``select_trainable(model)``: which parameters train. Default: leave the job's choice
   (``model.trainable_layers``) alone; RMU trains a few MLP matrices.
2. ``prepare(data)``: one-off work on theta_0 before the first step (reference log-probs,
   frozen activations, the control vector). Default: nothing.
3. ``unlearn(model, data, train, train_cfg) -> stats``: the update itself. Default: the shared
   trainer on ``loss`` over seeded forget / retain pairs. A method that is not a training loop on
   a loss (task-vector negation) overrides it; ``train`` is the shared trainer with seed,
   precision and output directory bound.

and, inside the shared trainer, every step:

- ``loss(model, batch) -> (loss, terms)``: the objective on ``batch = {"forget", "retain"}``;
  ``terms`` are floats to log. Every method defines it, unless it overrides ``unlearn``.
- ``loss_parts(model, batch)``: the same objective as a sequence of ``(part, terms)`` whose parts
  sum to ``loss``. The one-process trainer back-propagates each part before computing the next,
  so only one part's activations are alive at a time (a forget + retain method's peak memory is
  that of its larger pass, not of both). Default: ``loss`` as a single part.
- ``backward(model, batch, scale) -> (loss, terms)``: only for methods that change the update
  rather than the loss (BLUR): fill ``p.grad`` (times ``scale``) yourself. A method that defines it
  runs on the plain trainer only (DeepSpeed keeps its own gradient buffers).

Class-level declarations read before anything runs:

- ``strategies``: the distributed strategies the method supports (None: every one), with
  ``strategies_reason`` for the error message;
- ``option_ranges``: each numeric option's allowed values (``runner.options.Range``), checked with
  the job's config before any stage;
- ``inputs(method_cfg)``: files and data sets the method reads beyond the benchmark's
  (``runner.inputs``), so that they enter the job key and are checked up front.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from runner.errors import ConfigError
from runner.options import Range


@dataclass
class UnlearnData:
    """What ``prepare`` may look at: the model before unlearning and the encoded forget / retain sets."""

    model: torch.nn.Module
    forget: list[dict]  # encoded QA examples, each with an integer "index"
    retain: list[dict]
    encode: Callable[[list[dict]], list[dict]]  # the benchmark's rows (QA or text) -> encoded examples
    pad_id: int
    eval_batch_size: int  # sequences per forward pass in one-off passes (cfg.eval.batch_size)
    precision: str
    seed: int
    forget_rows: list[dict] | None = None  # the raw rows behind `forget`, same order
    tokenizer: object = None  # with ``fmt``, for a method that encodes QA rows of its own (ILU's environments)
    fmt: object = None  # the model's prompt format (runner.data.qa.PromptFormat)
    cache_dir: Path | None = None  # the job's cache, for one-off work worth keeping across jobs (R²MU's traces)
    model_identity: dict | None = None  # what determines the loaded weights (runner.models.model_identity)


class Method:
    strategies: tuple[str, ...] | None = None
    strategies_reason: str = ""
    # option -> allowed values, checked before any stage (runner/options.py)
    option_ranges: dict[str, Range] = {}

    @classmethod
    def inputs(cls, method_cfg) -> list:
        return []

    def select_trainable(self, model) -> None:
        """Leave the parameters the job made trainable as they are."""

    def prepare(self, data) -> None:
        """No one-off work."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.loss is Method.loss and cls.unlearn is Method.unlearn:
            raise TypeError(f"{cls.__name__} defines neither loss (its objective) nor unlearn (its own update)")
        if "loss" in cls.__dict__ and "loss_parts" not in cls.__dict__:
            # a class that redefines its objective is trained on it, in one part, unless it also says how
            # it splits: an inherited split (ForgetRetainMethod's) would silently train the parent's objective
            cls.loss_parts = Method.loss_parts

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        # the shared trainer's objective; a method with its own ``unlearn`` has none and never reaches here
        raise TypeError(f"{type(self).__name__} updates the model in its own unlearn(); it has no loss")

    def loss_parts(self, model, batch: dict) -> Iterator[tuple[torch.Tensor, dict[str, float]]]:
        """The objective in parts that may be back-propagated one at a time (default: one part)."""
        yield self.loss(model, batch)

    def backward(self, model, batch: dict, scale: float) -> tuple[torch.Tensor, dict[str, float]]:
        # the trainer calls it only where ``fills_gradients`` says the method defines it
        raise TypeError(f"{type(self).__name__} leaves the update to the trainer; it has no backward")

    @property
    def fills_gradients(self) -> bool:
        """True where the method writes the update into ``p.grad`` itself (overrides ``backward``)."""
        return type(self).backward is not Method.backward

    def unlearn(self, model, data, train, train_cfg) -> dict:
        """The shared trainer on this method's loss, over seeded forget / retain pairs."""
        from runner.training import PairedDataset, collate_pairs

        return train(
            model,
            PairedDataset(data.forget, data.retain, data.seed),
            collate_pairs(data.pad_id),
            self.loss,
            train_cfg,
            stage="unlearn",
            backward_fn=self.backward if self.fills_gradients else None,
            parts_fn=self.loss_parts,
        )


class ForgetRetainMethod(Method, ABC):
    """A method whose objective is ``gamma * forget_term + alpha * retain_term``.

    The two terms are separate, unweighted hooks, so a wrapper (BLUR, ILU) can take the method as
    its base and combine or differentiate them itself. ``forget_name`` labels the forget term in
    the training log.
    """

    alpha: float = 1.0
    gamma: float = 1.0
    forget_name: str = "forget"
    # the two weights of terms to minimise: a negative one flips a term into one to maximise
    option_ranges = {
        "alpha": Range(low=0, example="1.0"),
        "gamma": Range(low=0, example="1.0"),
    }

    @abstractmethod
    def forget_term(self, model, batch: dict) -> torch.Tensor: ...

    @abstractmethod
    def retain_term(self, model, batch: dict) -> torch.Tensor: ...

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """gamma * forget_term + alpha * retain_term; the retain pass is skipped at alpha = 0."""
        return sum_parts(
            ForgetRetainMethod.loss_parts(self, model, batch)
        )  # its own split, even where a subclass redefines loss

    def loss_parts(self, model, batch: dict) -> Iterator[tuple[torch.Tensor, dict[str, float]]]:
        """gamma * forget_term, then alpha * retain_term (none at alpha = 0)."""
        forget = self.forget_term(model, batch)
        yield self.gamma * forget, {self.forget_name: forget.item()}
        if self.alpha != 0:
            retain = self.retain_term(model, batch)
            yield self.alpha * retain, {"retain_nll": retain.item()}


def sum_parts(parts) -> tuple[torch.Tensor, dict[str, float]]:
    """One loss and its terms from ``loss_parts`` (the DeepSpeed path and every caller of ``loss``)."""
    total, terms = None, {}
    for part, part_terms in parts:
        total = part if total is None else total + part
        terms.update(part_terms)
    return total, terms


def require_single_process(method: str) -> None:
    """Stop at start-up where a method's whole-gradient arithmetic would silently see one rank's shard."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise ConfigError(
            "distributed",
            f"{method} works on whole gradients of the trainable parameters; the multi-process path "
            "does not reduce them across ranks",
            f"run {method} with distributed=none (one process)",
        )
