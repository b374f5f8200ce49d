"""``threads: auto | N``: torch's intra-op threads from the cores this job can really use.

torch starts one OpenMP thread per core it sees, and OpenMP threads spin while they wait for a
core: on a shared machine, a 2-thread job next to another one ran its fine-tuning step 11x slower
and its generation up to 6x slower than with one thread. ``auto`` counts the cores the process may
run on (its CPU affinity, and the cgroup's CPU quota in containers and Slurm jobs), divided among the
processes that share them: the local ranks of a distributed launch (``LOCAL_WORLD_SIZE``) or the jobs a
launcher runs at once on one machine (``RUNNER_PARALLEL_JOBS``). On a shared machine (every core in the
affinity mask, no quota) the cores other jobs keep busy (the load average at start) are left to them.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch

from runner.errors import ConfigError

log = logging.getLogger(__name__)


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The cgroup's CPU quota in cores (cgroup v2 ``cpu.max``, or v1 ``cfs_quota_us / cfs_period_us``); None: none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may use: its affinity mask, capped by the cgroup quota (rounded up, at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_limit(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def sharing_processes(env=os.environ) -> int:
    """Processes of this launch on this machine: local ranks times jobs run side by side."""
    counts = []
    for name in ("LOCAL_WORLD_SIZE", "RUNNER_PARALLEL_JOBS"):
        value = env.get(name)
        counts.append(int(value) if value and value.isdigit() and int(value) > 0 else 1)
    return counts[0] * counts[1]


def check_config(value) -> None:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return
    raise ConfigError(
        "threads", f"must be auto or a positive whole number, got {value!r}", "e.g. threads=auto or threads=1"
    )


def busy_cores() -> float | None:
    """The machine's 1-minute load average when this process may run on every core with no quota (a shared
    machine, not a dedicated allocation: there other jobs' load says how many cores are really free); else None."""
    whole = hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) == os.cpu_count()
    if not whole or cgroup_cpu_limit() is not None or not hasattr(os, "getloadavg"):
        return None
    return os.getloadavg()[0]


def choose(value, cores: int | None = None, processes: int | None = None, busy: float | None = None) -> tuple[int, str]:
    """(intra-op threads, why) for the ``threads`` setting; ``busy``: other jobs' load on a shared machine."""
    if value != "auto":
        return int(value), f"threads={value}"
    cores = usable_cores() if cores is None else cores
    processes = sharing_processes() if processes is None else processes
    n = max(1, cores // processes)
    why = f"auto: {cores} usable core(s) / {processes} process(es) sharing them"
    if busy is not None and cores - busy < n:  # spinning threads on taken cores: fewer, not more
        n = max(1, int(cores - busy))
        why += f", {busy:.1f} busy (load average)"
    return n, why


def apply(value) -> dict:
    """Set torch's intra-op threads from the setting; what was chosen (for results.json and the log)."""
    n, why = choose(value, busy=busy_cores() if value == "auto" else None)
    torch.set_num_threads(n)
    log.info("threads: %d intra-op (%s)", n, why)
    return {"intra_op": n, "why": why}
