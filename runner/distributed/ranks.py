"""Which process this is: ranks from the environment, the main process, and what the ranks must agree on.

The ranks come from the environment, set by whoever started the processes:

- ``torchrun --nproc_per_node=N -m runner ...`` (RANK / WORLD_SIZE / LOCAL_RANK);
- ``python -m runner distributed.nproc_per_node=N ...``, which starts N ranks of itself
  with torchrun's environment (runner/distributed/launch.py);
- Slurm with one task per GPU (``hydra/launcher=slurm``, ``tasks_per_node=N``):
  SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID become the torch variables.

All ranks run every stage, because training is collective; only rank 0 evaluates,
writes ``results.json``, the caches and the logs (``is_main_process``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import subprocess

import torch

log = logging.getLogger(__name__)


# ---- ranks ------------------------------------------------------------------------------------


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.lstrip("-").isdigit() else default


def rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return env_int("RANK", 0)


def world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return env_int("WORLD_SIZE", 1)


def local_rank() -> int:
    return env_int("LOCAL_RANK", 0)


def device() -> torch.device:
    """This rank's GPU, or the CPU."""
    return torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")


def is_main_process() -> bool:
    """Rank 0 evaluates, writes results.json, the caches and the logs."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()


def from_main(value):
    """Rank 0's ``value`` on every rank: decisions that must agree (cache hit or miss, job finished)."""
    if world_size() == 1 or not torch.distributed.is_initialized():
        return value
    box = [value if is_main_process() else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def slurm_to_torch_env(env: dict | None = None) -> bool:
    """Under Slurm with several tasks (one per GPU), export RANK / WORLD_SIZE / ... from the SLURM_* variables.

    Returns True when it did. Nothing changes where torchrun already set RANK, or where the job has one task
    (which may then start its own ranks with ``distributed.nproc_per_node``).
    """
    env = os.environ if env is None else env
    tasks = int(env.get("SLURM_NTASKS", "1") or 1)
    if "RANK" in env or tasks <= 1 or "SLURM_PROCID" not in env:
        return False
    env["RANK"] = env["SLURM_PROCID"]
    env["WORLD_SIZE"] = str(tasks)
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    env["LOCAL_WORLD_SIZE"] = env.get("SLURM_NTASKS_PER_NODE", str(tasks)).split("(")[0]
    env.setdefault("MASTER_ADDR", _first_slurm_host(env))
    # one port per job, the same on every task: derived from the job id
    env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0") or 0) % 20000))
    return True


def _first_slurm_host(env) -> str:
    nodes = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodes:
        return "127.0.0.1"
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return nodes.split(",")[0]


def launch_info() -> dict:
    """Where the job ran, for results.json: world size, host and the Slurm job it belongs to (if any)."""
    info = {"world_size": world_size(), "host": socket.gethostname()}
    slurm = {
        key: os.environ[var]
        for key, var in (
            ("job_id", "SLURM_JOB_ID"),
            ("array_job_id", "SLURM_ARRAY_JOB_ID"),
            ("array_task_id", "SLURM_ARRAY_TASK_ID"),
            ("restart_count", "SLURM_RESTART_COUNT"),
            ("partition", "SLURM_JOB_PARTITION"),
            ("nodelist", "SLURM_JOB_NODELIST"),
        )
        if os.environ.get(var)
    }
    if slurm:
        info["slurm"] = slurm
    return info


def free_port() -> int:
    """A TCP port free on this host now: the rendezvous of ranks this process brings up itself."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_process(seed: int) -> int:
    """Seed python, numpy and torch with ``seed + rank`` (after the group is up); returns that seed.

    Anything a rank draws for itself differs across ranks; draws that must agree
    (data order, the RMU control vector, coreset picks) use their own seeded generators.
    """
    import numpy as np

    own = int(seed) + rank()
    random.seed(own)
    np.random.seed(own % 2**32)
    torch.manual_seed(own)
    return own


def quiet_other_ranks() -> None:
    """Ranks other than 0 log warnings only, and not into the run directory's log file."""
    if is_main_process():
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    import transformers

    transformers.logging.set_verbosity_error()
