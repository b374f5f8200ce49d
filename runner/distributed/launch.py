"""Starting a job's local ranks ourselves: ``python -m runner distributed.nproc_per_node=N`` without torchrun."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

from runner.distributed.ranks import env_int, free_port

log = logging.getLogger(__name__)


def should_self_launch(nproc_per_node: int) -> bool:
    """Several ranks asked for in a process nobody started as a rank: start the ranks ourselves."""
    return int(nproc_per_node) > 1 and "RANK" not in os.environ and env_int("SLURM_NTASKS", 1) <= 1


# Hydra settings of the parent that make no sense for the ranks: each rank is a plain run in the job's directory
_NOT_FOR_RANKS = (
    "hydra.run.",
    "hydra.sweep.",
    "hydra.mode",
    "hydra/launcher",
    "hydra.launcher.",
    "hydra/sweeper",
    "hydra.sweeper.",
)


INTERRUPTED = 130  # launch_local's code when a signal stopped the ranks


@dataclass(frozen=True)
class RanksEnded:
    """How a job's local ranks ended: ``code`` 0, ``INTERRUPTED``, or the code of the rank that failed first
    (``rank``, its ``returncode``: negative for a signal, as ``subprocess`` reports it)."""

    code: int
    rank: int | None = None
    returncode: int | None = None

    @property
    def signal(self) -> str | None:
        """The name of the signal that ended the rank (``SIGABRT``); None when it exited with a code."""
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"

    def how(self) -> str:
        """``rank 1 was killed by SIGABRT`` / ``rank 0 exited with code 3``."""
        if self.signal:
            return f"rank {self.rank} was killed by {self.signal}"
        return f"rank {self.rank} exited with code {self.returncode}"


def launch_local(nproc: int, overrides: Iterable[str], run_dir: str, hydra_overrides: Iterable[str] = ()) -> RanksEnded:
    """Run this job as ``nproc`` local ranks (one process each, as torchrun --standalone would); returns how they
    ended (the exit code, and which rank failed first).

    The ranks get the job's own overrides, the command line's Hydra settings that shape the config
    (``hydra.searchpath``, ...), and ``hydra.run.dir`` so that they share the job's run directory;
    their environment is torchrun's (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR / MASTER_PORT on a free
    port). SIGTERM and SIGINT (Slurm's time-out, ``kill``, Ctrl-C) are passed on to every rank, which
    records ``interrupted``; the code is then ``INTERRUPTED``. When one rank fails (an error, a crash,
    a kill), the others are stopped rather than left waiting at a collective, and the rank that failed
    first is reported: the job is then ``failed``, not interrupted (``job.record_rank_failure``). The ranks' own console lines are the only
    output: no launcher traceback.
    """
    kept_hydra = [o for o in hydra_overrides if not o.lstrip("+~").startswith(_NOT_FOR_RANKS)]
    cmd = [sys.executable, "-m", "runner", *overrides, *kept_hydra, f"hydra.run.dir={run_dir}"]
    log.info("starting %d local ranks: %s", nproc, " ".join(cmd))
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    base |= {"WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0"}
    base.setdefault("OMP_NUM_THREADS", "1")  # as torchrun: N ranks must not each take every core
    signalled = []

    def forward(signum, frame):
        signalled.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    procs: list[subprocess.Popen] = []
    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for r in range(nproc):
            # a session of their own: a terminal's Ctrl-C reaches the ranks once, through `forward`
            env = {**base, "RANK": str(r), "LOCAL_RANK": str(r)}
            procs.append(subprocess.Popen(cmd, env=env, start_new_session=True))
        return _wait_ranks(procs, signalled)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for p in procs:  # never leave a rank behind
            if p.poll() is None:
                p.kill()
                p.wait()


def _wait_ranks(procs: list, signalled: list, grace_s: float = 60.0) -> RanksEnded:
    failed_at, first = None, None
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            break
        bad = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
        if bad and failed_at is None:  # a rank failed: the others would wait at their next collective
            failed_at, first = time.monotonic(), bad[0]
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
        if failed_at is not None and time.monotonic() - failed_at > grace_s:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.2)
    if signalled:
        return RanksEnded(INTERRUPTED)
    if first is None:  # they all ended between two looks: the first non-zero in rank order
        first = next(((r, c) for r, c in enumerate(codes) if c != 0), None)
    if first is None:
        return RanksEnded(0)
    rank, code = first
    if code in (INTERRUPTED, -signal.SIGTERM, -signal.SIGINT):  # the ranks themselves got the job's signal
        return RanksEnded(INTERRUPTED)
    return RanksEnded(code, rank, code)
