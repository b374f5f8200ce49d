"""``python -m runner [overrides]``: one Hydra job (``-m`` for a sweep)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from runner.errors import ConfigError, JobInterrupted, TrainingDiverged

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from runner import job

    try:
        hydra_cfg = HydraConfig.get()
        job.run(
            cfg,
            hydra_cfg.runtime.output_dir,
            choices=dict(hydra_cfg.runtime.choices),
            overrides=list(hydra_cfg.overrides.task),
        )
    except (ConfigError, TrainingDiverged) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except (KeyboardInterrupt, JobInterrupted):
        sys.exit(130)


if __name__ == "__main__":
    main()
