"""What every section of ``make bench`` shares: the peak-memory sampler, the step timer, the composed config and
the method's prepared data. The sections import this module and never each other (scripts/bench.py runs them)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the options a method needs to run at all on the bench's batch (the first forget01 rows)
METHOD_OVERRIDES = {"dpo": ["method.alternates=tests/fixtures/tofu_forget01_alternates.jsonl"]}


def rss_mb() -> float:
    """Current resident set size (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRSS(threading.Thread):
    """Samples the resident set every few milliseconds; ``peak`` is the highest seen (``start()``, then ``stop()``)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = rss_mb(), True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.002)

    def stop(self) -> float:
        """Stop sampling; returns the peak."""
        self.running = False
        self.join()
        return self.peak


def timed(step, device) -> float:
    """Seconds ``step()`` takes, the GPU's queue drained before and after (a CUDA call returns before it ends)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compose_config(*overrides: str):
    """The runner's composed config under ``overrides``, as a job gets it from the command line."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def unlearn_data(cfg, model, tokenizer, bench, n: int, precision: str):
    """The ``UnlearnData`` a job hands its method, over the first ``n`` forget and retain rows (batch size ``n``)."""
    from runner.data.qa import PromptFormat
    from runner.methods.base import UnlearnData
    from runner.models import model_identity

    return UnlearnData(
        model,
        bench.encode(bench.forget_rows)[:n],
        bench.encode(bench.retain_rows)[:n],
        bench.encode,
        tokenizer.pad_token_id,
        n,
        precision,
        0,
        bench.forget_rows[:n],
        tokenizer=tokenizer,
        fmt=PromptFormat.from_cfg(cfg.model.prompt),
        cache_dir=Path(str(cfg.paths.cache_dir)).resolve(),  # AltPO's alternates, R²MU's traces: built once, cached
        model_identity=model_identity(cfg.model),
    )
