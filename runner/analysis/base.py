"""The contract of an analysis (``analysis=`` config group, ``task=analyse``).

An analysis reads finished run directories (their ``results.json`` and the weights kept with
``save_model=trainable|full``) and never re-runs training. It fills the analysis job's record:

- ``check()``: called first, before any model is loaded: refuse bad inputs (a run that kept no
  weights, runs that do not fit together) with a ``ConfigError`` naming the ``analysis.*`` key.
- ``run(record, run_dir, cache_dir)``: the analysis itself. Time-consuming steps go inside
  ``record.stage(name)``; headline numbers go to ``record.data["metrics"]`` (rows -> metric -> value,
  as every job kind's), the analysis' own detail to ``record.data[self.name]``, files to ``run_dir``.

The implementations: ``runner/analysis/connectivity.py`` (mode connectivity), ``runner/analysis/trace.py``
(unlearning trace detection).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path


class Analysis(ABC):
    name = "analysis"

    def check(self) -> None:
        """Refuse bad inputs before anything expensive (default: nothing to check)."""
        return None

    @abstractmethod
    def run(self, record, run_dir: Path, cache_dir: Path) -> None: ...
