"""The unlearning stage: a method's hooks in the order its contract gives (``runner/methods/base.py``)."""

from __future__ import annotations

import functools
from pathlib import Path

from runner.distributed import Strategy
from runner.methods.base import Method, UnlearnData
from runner.training import train


def unlearn(
    method: Method,
    data: UnlearnData,
    train_cfg,
    output_dir: Path,
    callbacks: list | None = None,
    strategy: Strategy | None = None,
) -> dict:
    """Choose the trainable parameters, do the method's one-off work on theta_0, then its update.

    ``data.seed`` seeds everything in the stage: the forget / retain pairing, the trainer, the method.
    ``strategy`` is the job's distributed strategy (None: one process).
    """
    method.select_trainable(data.model)
    method.prepare(data)
    bound_train = functools.partial(
        train, seed=data.seed, precision=data.precision, output_dir=output_dir, callbacks=callbacks, strategy=strategy
    )
    return method.unlearn(data.model, data, bound_train, train_cfg)
