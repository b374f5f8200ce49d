"""Distributed runs for real on CPU: two gloo ranks under torchrun, DeepSpeed ZeRO-2 / ZeRO-3 and DDP,
against the one-process run with the same global batch.

Tolerance (also in docs/scaling-out.md): the two-rank run sees the same examples in the same global
batches and the same forget / retain pairs (runner/training.py: PairedDataset), so it differs
from one process only by the order of floating-point sums and by averaging two per-rank
token means instead of one over the batch. Probabilities, truth ratio and forget quality
agree within 0.01 (absolute); ROUGE of greedy answers within 0.05 (a changed token flips a
word); the mean training loss within 1%.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner import job
from tests.conftest import ROOT, TINY, compose_cfg

FIXTURE_CONF = ROOT / "tests" / "fixtures" / "distributed_conf"
CLOSE = {"forget_prob": 0.01, "retain_prob": 0.01, "forget_truth_ratio": 0.01, "forget_quality": 0.01}
ROUGE = {"forget_rouge": 0.05, "retain_rouge": 0.05}
# one process with batch b  <->  two ranks with batch b/2 (fine-tuning of the reference models: 8 <-> 4)
ONE = ["unlearn.batch_size=4"]
TWO = ["unlearn.batch_size=2", "benchmark.finetune.batch_size=4"]


def _env():
    # one thread per rank on this 2-core machine; DeepSpeed's CPU accelerator
    return {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONUNBUFFERED": "1"}


def _case(name: str, cache: Path) -> list[str]:
    # a seed of their own: the one-process baselines must not be "identical jobs" of other tests' runs
    return [
        *TINY,
        f"paths.cache_dir={cache}",
        f"hydra.searchpath=[file://{FIXTURE_CONF}]",
        f"+dist_case={name}",
        "seed=71",
    ]


@pytest.fixture(scope="module")
def single(shared_cache, tmp_path_factory):
    """The one-process results of NPO and RMU (RMU without its activation cache: theta_0 passes each step)."""
    import torch

    out = tmp_path_factory.mktemp("single")
    results, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread, like each rank (two threads thrash on a busy 2-core box)
    try:
        for name in ("npo", "rmu"):
            results[name] = job.run(compose_cfg(*_case(name, shared_cache), *ONE), out / name)
    finally:
        torch.set_num_threads(threads)
    return results


def _assert_close(got: dict, want: dict, label: str) -> None:
    for metric, tol in {**CLOSE, **ROUGE}.items():
        assert abs(got[metric] - want[metric]) <= tol, (label, metric, got[metric], want[metric])


# ---- two ranks for real ----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_ranks_under_torchrun_zero2_and_zero3_match_one_process(single, shared_cache, tmp_path):
    """One torchrun launch, a 6-point sweep: {NPO, RMU, RMU with activation cache} x {ZeRO-2, ZeRO-3}.

    Under ZeRO-3 every parameter is partitioned (no persistence threshold). RMU with and without its
    activation cache computes the same loss by two code paths: both are held to the one-process RMU.
    """
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "runner",
        "-m",
        *_case("npo,rmu,rmu_cached", shared_cache),
        "distributed=zero2,zero3",
        "++distributed.zero.stage3_param_persistence_threshold=0",  # ZeRO-3: no whole tiny parameter stays
        *TWO,
        f"hydra.sweep.dir={sweep}",
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    for name, baseline in (("npo", "npo"), ("rmu", "rmu"), ("rmu_cached", "rmu")):
        for option in ("zero2", "zero3"):
            run_dir = next(sweep.glob(f"*dist_case={name},*distributed={option}*"))
            assert [p.name for p in run_dir.rglob("results.json")] == ["results.json"]  # one, from rank 0
            record = json.loads((run_dir / "results.json").read_text())
            assert record["status"] == "completed"
            assert record["launch"]["world_size"] == 2
            assert record["config"]["distributed"]["_target_"].startswith("runner.distributed.strategies.")
            assert record["config"]["distributed"]["zero"]["stage"] == int(option[-1])  # zero2, zero3
            _assert_close(record["metrics"]["unlearned"], single[baseline]["metrics"]["unlearned"], f"{name}/{option}")
            loss, want = (
                record["training"]["unlearn"]["train_loss"],
                single[baseline]["training"]["unlearn"]["train_loss"],
            )
            assert loss == pytest.approx(want, rel=0.01), (name, option)
            assert record["training"]["unlearn"]["steps"] == single[baseline]["training"]["unlearn"]["steps"]
            log = (run_dir / "__main__.log").read_text()
            assert log.count("cache hit: tiny test model") == 1  # every rank loads it; only rank 0 logs it
    # the reference models of two ranks x batch 4 are the one-process x batch 8 entries: nothing re-trained
    assert "finetune_target" not in record["training"]


@pytest.mark.slow
def test_nproc_per_node_starts_the_ranks_itself_ddp(single, shared_cache, tmp_path):
    """``python -m runner distributed.nproc_per_node=2``: no torchrun on the command line; DDP this time."""
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "runner",
        *_case("npo", shared_cache),
        "distributed=ddp",
        "distributed.nproc_per_node=2",
        *TWO,
        f"hydra.run.dir={run_dir}",
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and record["launch"]["world_size"] == 2
    assert record["config"]["distributed"]["_target_"] == "runner.distributed.strategies.DDP"
    assert record["config"]["method"]["_target_"] == "runner.methods.npo.NPO"  # the ranks saw hydra.searchpath
    _assert_close(record["metrics"]["unlearned"], single["npo"]["metrics"]["unlearned"], "npo/ddp")
