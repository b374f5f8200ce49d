"""The tracker contract: what a job calls on its dashboard, and when.

A tracker is built once per job, on the main process only, from its ``conf/logger`` node
(``_target_`` + options) plus these runtime keyword arguments:

- ``run_dir``: the job's run directory (a tracker keeps its files under it);
- ``config``: the job's resolved config, secrets already redacted;
- ``choices``: Hydra's group choices (``method: npo``), for names and grouping;
- ``hidden``: the job's secret values, to redact from anything else it sends.

Then, in order:

1. ``callbacks``: Trainer callbacks passed to every ``training.train`` call; the base class turns
   each Trainer log into one ``log_step`` call, the stage named by the Trainer's output directory
   (``unlearn``, ``finetune_target`` ...; each stage restarts at step 0).
2. ``log_step(stage, step, values)``: one training step's numbers (loss, the method's own terms,
   learning rate, gradient norm).
3. ``log_results(results)``: the final results.json record: metrics as the run summary,
   per-example values where the tracker keeps them.
4. ``close(completed)``: end the run; ``completed`` is False for a failed or interrupted job.

``finish(results)`` runs 3 then 4 whatever the job's status; an error while logging is a warning,
never the job's failure: results.json already holds everything.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path

from transformers import TrainerCallback

log = logging.getLogger(__name__)


class Tracker(ABC):
    @abstractmethod
    def log_step(self, stage: str, step: int, values: dict[str, float]) -> None:
        """One training step's numbers of ``stage``."""

    @abstractmethod
    def log_results(self, results: dict) -> None:
        """The job's final record (results.json content): summary metrics, per-example values."""

    @abstractmethod
    def close(self, completed: bool) -> None:
        """End the run, as a success only when ``completed``."""

    @property
    def callbacks(self) -> list[TrainerCallback]:
        return [_StepLogs(self)]

    def finish(self, results: dict) -> None:
        try:
            self.log_results(results)
        except Exception as exc:  # a dashboard error must not fail a job whose record is written
            log.warning("%s: could not log the final results (%s)", type(self).__name__, exc)
        finally:
            self.close(results.get("status") == "completed")


class NullTracker(Tracker):
    """No tracker (``logger: null``, and every process but the main one): no callbacks, nothing written."""

    @property
    def callbacks(self) -> list[TrainerCallback]:
        return []

    def log_step(self, stage: str, step: int, values: dict[str, float]) -> None:
        pass

    def log_results(self, results: dict) -> None:
        pass

    def close(self, completed: bool) -> None:
        pass


class _StepLogs(TrainerCallback):
    """Trainer logs -> ``tracker.log_step``, numbers only (the Trainer also logs strings and flags)."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        # train() gives each stage its own output directory: unlearn, finetune_target, finetune_retain, ...
        stage = Path(args.output_dir).name or "train"
        self.tracker.log_step(stage, state.global_step, numbers(logs or {}))


def numbers(logs: dict) -> dict[str, float]:
    out = {}
    for k, v in logs.items():
        if isinstance(v, bool):
            continue
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out
