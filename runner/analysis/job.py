"""The analysis job (``task=analyse``): finished runs -> load their models -> analysis -> record."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from runner import distributed
from runner.analysis.base import Analysis
from runner.components import build


def run_analysis(cfg: DictConfig, run_dir: Path, cache_dir: Path, record) -> None:
    """Build ``cfg.analysis``, check its inputs, run it on rank 0; fills ``record`` (saved by the caller)."""
    analysis = build(cfg.analysis, Analysis, "analysis")
    analysis.check()  # before any model is loaded
    if distributed.is_main_process():
        analysis.run(record, run_dir, cache_dir)
