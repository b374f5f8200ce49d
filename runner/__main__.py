"""``python -m runner [overrides]``: one Hydra job (``-m`` or ``+sweep=NAME`` for a sweep).

``distributed.nproc_per_node=N`` (N > 1) in a process nobody started as a rank runs the
job as N local ranks (``distributed.launch_local``), all in this job's run directory; under
torchrun or Slurm tasks, this process is one of the ranks.

In a sweep, a failing grid point does not stop the others: its error is recorded in its
results.json and raised to Hydra, which reports the first failure once every point ran.

Errors of input (a config value, a data file) or of the machine (a full or read-only disk) end
with one line naming the key or file and the fix, exit status 1; a signal ends the job as
`interrupted` with exit status 130. Only a bug shows a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from runner.errors import ConfigError, InvalidResult, JobInterrupted, TrainingDiverged, environment_problem

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from runner import distributed

    hydra_cfg = HydraConfig.get()
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    distributed.slurm_to_torch_env()  # under Slurm with one task per GPU, this task's rank
    distributed.quiet_other_ranks()
    run_dir = hydra_cfg.runtime.output_dir
    choices, overrides = dict(hydra_cfg.runtime.choices), list(hydra_cfg.overrides.task)
    try:
        from runner import job, job_kinds

        try:
            nproc = distributed.build_strategy(cfg.get("distributed")).nproc_per_node  # checks the strategy's options
            self_launch = distributed.should_self_launch(nproc)
            if self_launch:  # every check before any rank starts: one message, not one per rank
                job_kinds.validate(cfg)
        except ConfigError as exc:
            if distributed.is_main_process():
                job.record_failure(cfg, run_dir, exc, choices, overrides)
            raise
        if self_launch:
            ended = distributed.launch_local(nproc, overrides, run_dir, list(hydra_cfg.overrides.hydra))
            if ended.code == distributed.INTERRUPTED:
                raise JobInterrupted("signal")
            if ended.code != 0:  # a rank lost to an error or a crash: `failed`, naming it (not `interrupted`)
                raise RankFailed(job.record_rank_failure(run_dir, ended))
            return
        job.run(cfg, run_dir, choices=choices, overrides=overrides)
    except (KeyboardInterrupt, JobInterrupted):
        sys.exit(130)  # the job logged its one line (results.json marked `interrupted`)
    except Exception as exc:
        if _signal_received():  # an error raised while a signal stopped the job is the signal's doing
            sys.exit(130)
        if isinstance(exc, (ConfigError, TrainingDiverged, InvalidResult, RankFailed)):
            _fail(str(exc), sweep)
            return
        problem = environment_problem(exc)
        if problem is None:  # a bug: the traceback is worth having
            raise
        _fail(problem, sweep)


def _signal_received() -> bool:
    job = sys.modules.get("runner.job")  # not imported yet: no job ran, so no job's signal
    return job is not None and job.signal_received()


def _fail(message: str, sweep: bool) -> None:
    """One line on stderr; exit 1, or in a sweep hand the failure to Hydra, which runs the other points."""
    from runner import distributed

    if distributed.is_main_process():  # rank 0 says it, once
        print(f"error: {message}", file=sys.stderr)
    if sweep:  # Hydra prints a compact exception's message alone, once every point has run
        raise PointFailed(f"the first failing point: {message}") from None
    sys.exit(1)


class RankFailed(RuntimeError):
    """A job run as local ranks (``distributed.nproc_per_node``) failed."""


class PointFailed(CompactHydraException):
    """A sweep point failed for a reason already printed in one line (results.json says `failed`)."""


if __name__ == "__main__":
    main()
