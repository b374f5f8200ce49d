"""Fixtures of the output tests: a real tiny sweep, shared by the report and the W&B tests (built once)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner import job
from runner.errors import ConfigError
from tests.conftest import ROOT, TINY, compose_cfg


def run_job(cache: Path, run_dir: Path, method: str, seed: int, *extra: str) -> None:
    """One real tiny TOFU job in ``run_dir``, its Hydra choices recorded as a sweep would."""
    cfg = compose_cfg(*TINY, f"paths.cache_dir={cache}", f"method={method}", f"seed={seed}", *extra)
    groups = {"method": method, "benchmark": "tofu", "model": "tiny", "coreset": "none", "finetune_attack": "none"}
    groups |= {k: v for k, _, v in (e.partition("=") for e in extra) if k in groups}  # what Hydra would record
    job.run(cfg, run_dir, choices=groups)


@pytest.fixture(scope="session")
def sweep(shared_cache, tmp_path_factory) -> Path:
    """A real sweep (GA, NPO x seeds 40, 41 — seeds no other test uses, so no job is a reused one; logged to W&B offline) plus two real failed jobs: NPO seed 2,
    and GradDiff's only run."""
    root = tmp_path_factory.mktemp("sweep")
    cmd = [sys.executable, "-m", "runner", "-m", *TINY, "method=ga,npo", "seed=40,41", "logger=wandb"]
    cmd.append(f"hydra.sweep.dir={root}")
    wandb_home = tmp_path_factory.mktemp("wandb-home")
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    env |= {"RUNNER_CACHE": str(shared_cache), "NETRC": str(wandb_home / "none")}
    env |= {v: str(wandb_home / v.lower()) for v in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR")}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for method, seed in (("npo", 2), ("graddiff", 0)):
        with pytest.raises(ConfigError):  # stops at the benchmark stage: status `failed`
            run_job(
                shared_cache, root / f"failed-{method}-{seed}", method, seed, f"benchmark.source={root / 'missing'}"
            )
    return root
