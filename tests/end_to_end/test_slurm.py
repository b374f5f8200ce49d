"""Sweeps through Slurm for real: a single-node cluster started by scripts/slurm_cluster_start.sh.

A two-point sweep with ``hydra/launcher=slurm`` runs as two Slurm jobs and leaves two complete
results.json; resubmitting it skips both. A job preempted mid-training (USR2, as Slurm sends
before a time-out or on preemption) is requeued by submitit, marked ``interrupted`` and then
completes on its second start.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY

START = ROOT / "scripts" / "slurm_cluster_start.sh"


@pytest.fixture(scope="module")
def slurm_env():
    """Start (or reuse) the local cluster; skip only where it cannot be installed (no apt, not root)."""
    if shutil.which("slurmctld") is None and (shutil.which("apt-get") is None or os.geteuid() != 0):
        pytest.skip("Slurm is not installed and cannot be: scripts/slurm_cluster_start.sh needs root and apt-get")
    out = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    conf = re.search(r"export SLURM_CONF=(\S+)", out.stdout).group(1)
    return {**os.environ, "SLURM_CONF": conf, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _sweep(sweep: Path, cache: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "runner",
        "-m",
        "hydra/launcher=slurm",
        *TINY,
        f"paths.cache_dir={cache}",
        f"hydra.sweep.dir={sweep}",
        "hydra.launcher.cpus_per_task=1",  # two points side by side on a 2-CPU node
        "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=15",
        *overrides,
    ]


def _scontrol_state(env, job_id: str, wait_for_end: bool = True) -> dict:
    """Slurm's record of a job; by default waits (a little) for it to leave RUNNING / COMPLETING:
    submitit hands the result back as soon as it is written, a moment before the process exits."""
    deadline = time.time() + 60
    while True:
        out = subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True, timeout=30)
        state = dict(re.findall(r"(\w+)=(\S+)", out.stdout))
        if not wait_for_end or state.get("JobState") not in ("RUNNING", "COMPLETING") or time.time() > deadline:
            return state
        time.sleep(0.5)


@pytest.mark.slow
def test_two_point_sweep_runs_as_slurm_jobs_and_a_resubmission_skips_both(slurm_env, shared_cache, tmp_path):
    sweep = tmp_path / "sweep"
    first = subprocess.run(
        _sweep(sweep, shared_cache, "seed=61,62"), cwd=ROOT, env=slurm_env, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stderr[-4000:]
    paths = sorted(sweep.glob("*/results.json"))
    assert len(paths) == 2
    records = [json.loads(p.read_text()) for p in paths]
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert sorted(r["config"]["seed"] for r in records) == [61, 62]
    assert all(r["metrics"]["unlearned"]["forget_prob"] >= 0 for r in records)
    job_ids = [r["launch"]["slurm"]["job_id"] for r in records]
    assert len(set(job_ids)) == 2  # one Slurm job per grid point (the two tasks of one job array)
    assert len({r["launch"]["slurm"]["array_job_id"] for r in records}) == 1
    for job_id in job_ids:  # Slurm's own record of them
        state = _scontrol_state(slurm_env, job_id)
        assert state["JobState"] == "COMPLETED" and state["ExitCode"] == "0:0", state

    again = subprocess.run(
        _sweep(sweep, shared_cache, "seed=61,62"), cwd=ROOT, env=slurm_env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-4000:]
    assert [json.loads(p.read_text()) for p in paths] == records  # untouched: same ids, same timestamps
    logs = "".join(p.read_text() for p in sweep.glob("*/__main__.log"))
    assert logs.count("identical job already completed") == 2  # logged by the two resubmitted Slurm jobs


@pytest.mark.slow
def test_preempted_job_is_requeued_marked_interrupted_and_completes(slurm_env, shared_cache, tmp_path):
    sweep = tmp_path / "sweep"
    cmd = _sweep(sweep, shared_cache, "seed=63", "unlearn.max_steps=150")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=slurm_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        record_path, record = None, None
        deadline = time.time() + 300
        while time.time() < deadline:  # wait until unlearning has started
            found = list(sweep.glob("*/results.json"))
            if found:
                record_path = found[0]
                try:
                    record = json.loads(record_path.read_text())
                except json.JSONDecodeError:
                    record = None
                if record and "finetuned_models" in record["timings"]:
                    break
            time.sleep(0.2)
        assert record and "finetuned_models" in record["timings"], "the job did not reach unlearning"
        job_id = record["launch"]["slurm"]["job_id"]
        time.sleep(0.5)
        # what Slurm sends before a time-out (--signal=USR2@signal_delay_s) or on preemption
        subprocess.run(["scancel", "--signal=USR2", job_id], env=slurm_env, check=True, timeout=30)
        statuses = set()
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError, json.JSONDecodeError):
                statuses.add(json.loads(record_path.read_text())["status"])
            time.sleep(0.2)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    final = json.loads(record_path.read_text())
    assert "interrupted" in statuses  # the first start's record, before the requeued start replaced it
    assert final["status"] == "completed"
    assert final["launch"]["slurm"]["job_id"] == job_id and final["launch"]["slurm"]["restart_count"] == "1"
    assert _scontrol_state(slurm_env, job_id)["Restarts"] == "1"


@pytest.mark.slow
def test_slurm_tasks_are_the_ranks_of_one_job(slurm_env, shared_cache, tmp_path):
    """tasks_per_node=2 with distributed=zero2: Slurm starts the two ranks (SLURM_PROCID -> RANK); one results.json."""
    sweep = tmp_path / "sweep"
    cmd = _sweep(sweep, shared_cache, "seed=64", "hydra.launcher.tasks_per_node=2", "distributed=zero2")
    cmd += ["unlearn.batch_size=2", "benchmark.finetune.batch_size=4"]  # the one-process batches, split in two
    out = subprocess.run(cmd, cwd=ROOT, env=slurm_env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    [path] = sweep.glob("*/results.json")
    record = json.loads(path.read_text())
    assert record["status"] == "completed" and record["launch"]["world_size"] == 2
    assert _scontrol_state(slurm_env, record["launch"]["slurm"]["job_id"])["NumTasks"] == "2"


# ---- named sweeps (sweeps/, composed as the config group `sweep`) -----------------------------------

SWEEPS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("name", SWEEPS)
def test_named_sweep_is_a_multirun_whose_every_point_composes_and_names_its_report(name):
    import itertools

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tests.conftest import CONF_DIR

    text = (ROOT / "sweeps" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_")
    report = re.search(r"^# report: python -m runner\.report <dir> report=(\w+)", text, re.M)
    assert report, "a sweep names the report preset it feeds"
    assert (ROOT / "conf" / "report" / f"{report.group(1)}.yaml").is_file()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"+sweep={name}"], return_hydra_config=True)
        assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"  # `+sweep=NAME` sweeps without -m
        params = OmegaConf.to_container(cfg.hydra.sweeper.params)
        grid = [[f"{k}={v}" for v in str(values).split(",")] for k, values in params.items()]
        points = list(itertools.product(*grid))
        assert len(points) >= 2
        for point in points:
            job = compose("config", overrides=[f"+sweep={name}", *point])
            OmegaConf.to_container(job, resolve=True)  # every interpolation of every point resolves


def test_a_named_sweep_s_own_groups_can_be_set_on_the_command_line():
    # Hydra reads the command line against the primary config, before any grid point: `+sweep=epic traces=...
    # condense.ratio=0.5` (the reproduction page's GPU and CPU commands) needs the distill groups there already
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["+sweep=epic", "traces=openr1_math", "condense.ratio=0.5"])
    assert cfg.task == "distill" and cfg.traces.name == "openr1_math" and cfg.condense.ratio == 0.5


def test_a_failing_point_does_not_stop_the_sweep(tmp_path, shared_cache):
    cmd = [sys.executable, "-m", "runner", "-m", *TINY, f"paths.cache_dir={shared_cache}"]
    cmd += ["unlearn.learning_rate=0,-1", f"hydra.sweep.dir={tmp_path}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0  # the sweep reports the failure ...
    assert out.stderr.count("error: config key `unlearn.learning_rate`") == 2  # ... after running both points
