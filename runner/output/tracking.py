"""Start the job's tracker: the ``logger`` config node built into a ``Tracker``, on the main process only."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from omegaconf import DictConfig

from runner.components import build
from runner.output.secrets import scrub, secret_values
from runner.output.trackers.base import NullTracker, Tracker


def start(logger: DictConfig | dict | None, run_dir: Path, config: dict, choices: dict | None = None) -> Tracker:
    """The tracker ``logger`` (the job's ``cfg.logger``) describes; a ``NullTracker`` for ``logger: null``
    and on every process but the main one.

    ``config`` is the job's resolved config as a dict (the tracker's record of the run), ``choices``
    Hydra's group choices. Secrets in either never reach the tracker.
    """
    if not is_main_process():
        return NullTracker()
    hidden = secret_values(config)
    tracker = build(
        logger,
        Tracker,
        "logger",
        run_dir=Path(run_dir),
        config=scrub(config, hidden),
        choices=choices or {},
        hidden=hidden,
    )
    return NullTracker() if tracker is None else tracker


def is_main_process() -> bool:
    try:  # the distributed module knows the launcher's rank; without it, the launcher's RANK
        dist = importlib.import_module("runner.distributed")
    except ImportError:
        dist = None
    if dist is not None and hasattr(dist, "is_main_process"):
        return bool(dist.is_main_process())
    return int(os.environ.get("RANK", "0")) == 0
