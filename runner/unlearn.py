"""The unlearning stage: a method's optional hooks, then the shared trainer on its loss.

Hooks a method may define, each optional but ``loss``:
- ``select_trainable(model)``: which parameters train (RMU trains a few MLP matrices);
- ``prepare(data)``: one-off work on theta_0 (reference log-probs, frozen activations, control vector);
- ``loss(model, batch) -> (loss, terms)``: the objective, on paired forget / retain batches;
- ``backward(model, batch, scale) -> (loss, terms)``: fills the gradients itself, for methods
  that change the update rather than the loss (BLUR);
- ``unlearn(model, data, train, train_cfg) -> stats``: methods that are not a training loop on a
  loss at all (task-vector negation), given the shared ``train`` function (seed, precision and
  output directory bound) and the run's trainer settings for any fine-tuning.
"""

from __future__ import annotations

import functools
from pathlib import Path

from runner.distributed import Strategy
from runner.methods.reference import UnlearnData
from runner.training import PairedDataset, collate_pairs, train


def unlearn(
    method,
    data: UnlearnData,
    train_cfg,
    seed: int,
    output_dir: Path,
    callbacks: list | None = None,
    strategy: Strategy | None = None,
) -> dict:
    model = data.model
    if hasattr(method, "select_trainable"):
        method.select_trainable(model)
    method.prepare(data)
    run_train = functools.partial(
        train, seed=seed, precision=data.precision, output_dir=output_dir, callbacks=callbacks, strategy=strategy
    )
    if hasattr(method, "unlearn"):
        return method.unlearn(model, data, run_train, train_cfg)
    return run_train(
        model,
        PairedDataset(data.forget, data.retain, seed),
        collate_pairs(data.pad_id),
        method.loss,
        train_cfg,
        stage="unlearn",
        backward_fn=getattr(method, "backward", None),
    )
