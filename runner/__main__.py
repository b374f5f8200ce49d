"""``python -m runner [overrides]``: one Hydra job (``-m`` or ``+sweep=NAME`` for a sweep).

``distributed.nproc_per_node=N`` (N > 1) in a process nobody started as a rank runs the
job as N local ranks under torchrun, all in this job's run directory; under torchrun or
Slurm tasks, this process is one of the ranks.

In a sweep, a failing grid point does not stop the others: its error is recorded in its
results.json and raised to Hydra, which reports the first failure once every point ran.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner.errors import ConfigError, JobInterrupted, TrainingDiverged

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from runner import distributed

    hydra_cfg = HydraConfig.get()
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    distributed.slurm_to_torch_env()  # under Slurm with one task per GPU, this task's rank
    distributed.quiet_other_ranks()
    try:
        distributed.check_config(cfg.distributed)
        if distributed.should_self_launch(cfg.distributed):
            code = distributed.launch_local(
                cfg.distributed.nproc_per_node,
                list(hydra_cfg.overrides.task),
                hydra_cfg.runtime.output_dir,
                list(hydra_cfg.overrides.hydra),
            )
            if code != 0:
                raise RankFailed(f"the ranks exited with code {code}; see {hydra_cfg.runtime.output_dir}")
            return
        from runner import job

        job.run(
            cfg,
            hydra_cfg.runtime.output_dir,
            choices=dict(hydra_cfg.runtime.choices),
            overrides=list(hydra_cfg.overrides.task),
        )
    except (ConfigError, TrainingDiverged, RankFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if sweep:  # Hydra records it and runs the remaining points
            raise
        sys.exit(1)
    except (KeyboardInterrupt, JobInterrupted):
        sys.exit(130)


class RankFailed(RuntimeError):
    """A job run as local ranks (``distributed.nproc_per_node``) failed."""


if __name__ == "__main__":
    main()
