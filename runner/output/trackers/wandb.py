"""Weights & Biases: config, per-step curves per stage, final metrics as the run summary, per-example Table.

The run lives in ``<run dir>/wandb/`` and is kept there; an offline run uploads with ``wandb sync``.
Runs of one sweep form one group, named after the sweep.
"""

from __future__ import annotations

import logging
import netrc
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from runner.errors import ConfigError
from runner.output import secrets
from runner.output.record import flatten
from runner.output.trackers.base import Tracker
from runner.output.trackers.summary import metric_rows, per_example_rows, summary_of

log = logging.getLogger(__name__)


class WandbTracker(Tracker):
    def __init__(
        self,
        project: str = "unlearn-runner",
        entity: str | None = None,
        group: str | None = None,
        tags: list | tuple = (),
        run_name: str | None = None,
        job_type: str = "unlearn",
        mode: str = "auto",
        log_per_example: bool = True,
        *,
        run_dir: Path,
        config: dict,
        choices: dict,
        hidden: list[str],
    ):
        import wandb

        self.hidden = hidden
        self.log_per_example = bool(log_per_example)
        if mode == "auto":
            mode = "online" if wandb_api_key_configured() else "offline"
        if mode not in ("online", "offline", "disabled"):
            raise ConfigError("logger.mode", f"`{mode}` is not a W&B mode", "use auto, online, offline or disabled")
        flat = flatten(config)
        flat.update({f"choice.{k}": v for k, v in choices.items()})
        argv = " ".join(sys.argv)
        settings = wandb.Settings(
            # the command line goes into W&B's run metadata: leave it out when it carries a secret
            x_disable_meta=secrets.scrub_text(argv, hidden) != argv,
            silent=True,
        )
        init = dict(
            project=project or "unlearn-runner",
            entity=entity or None,
            group=group or sweep_group(config),
            tags=[str(t) for t in (tags or [])],
            name=run_name or default_run_name(config, choices),
            job_type=job_type or "unlearn",
            config=flat,
            dir=str(run_dir),
            settings=settings,
        )
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        try:
            self.run = wandb.init(mode=mode, **init)
        except Exception as exc:  # no network, bad key: a long job should not die for its dashboard
            if mode != "online":
                raise
            log.warning("W&B online start failed (%s); logging offline instead, `wandb sync` it later", exc)
            mode = "offline"
            self.run = wandb.init(mode=mode, **init)
        self.mode = mode
        self.dir = Path(self.run.dir).parent if self.run.dir else None  # .../wandb/offline-run-*
        self.stages: set[str] = set()
        log.info("W&B run %s (%s) in %s", self.run.name, mode, self.dir)

    def log_step(self, stage: str, step: int, values: dict[str, float]) -> None:
        if stage not in self.stages:  # one step axis per stage: each train() call restarts at step 0
            self.run.define_metric(f"{stage}/step")
            self.run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
            self.stages.add(stage)
        self.run.log({**{f"{stage}/{k}": v for k, v in values.items()}, f"{stage}/step": step})

    def log_results(self, results: dict) -> None:
        import wandb

        self.run.summary.update(secrets.scrub(summary_of(results), self.hidden))
        if results.get("metrics"):  # summary values carry no direction: the metrics with labels and arrows
            columns, rows = metric_rows(results["metrics"])
            self.run.log({"metrics": wandb.Table(columns=columns, data=rows)})
        if self.log_per_example and results.get("per_example"):
            columns, rows = per_example_rows(results["per_example"])
            if rows:
                self.run.log({"per_example": wandb.Table(columns=columns, data=secrets.scrub(rows, self.hidden))})

    def close(self, completed: bool) -> None:
        self.run.finish(exit_code=0 if completed else 1)
        if self.mode == "offline":
            log.info("W&B offline run kept in %s; upload with `wandb sync %s`", self.dir, self.dir)


def default_run_name(config: dict, choices: dict) -> str:
    """method-benchmark-model[-coreset<ratio>][-attack][-decoding]-s<seed>, from Hydra's choices where known."""
    method = choices.get("method") or _class_name(config.get("method") or {}) or "none"
    benchmark = choices.get("benchmark") or (config.get("benchmark") or {}).get("name", "")
    model = choices.get("model") or (config.get("model") or {}).get("name", "")
    parts = [str(p) for p in (method, benchmark, model) if p]
    coreset = config.get("coreset")  # null: the whole forget set
    if coreset:
        parts.append(f"{coreset.get('name', '')}{coreset.get('ratio', '')}")
    attack = config.get("finetune_attack")  # null: no attack
    if attack:
        parts.append(str(attack.get("name", "attack")))
    decoding = config.get("decoding") or {}
    if decoding.get("name", "greedy") != "greedy":
        parts.append(str(decoding["name"]))
    parts.append(f"s{config.get('seed', 0)}")
    return "-".join(parts)


def _class_name(method_cfg: dict) -> str:
    return str(method_cfg.get("_target_", "")).rsplit(".", 1)[-1].lower()


def sweep_group(config: dict) -> str | None:
    """The sweep's name: ``sweep_name`` if the config sets one, else the multirun directory's name."""
    if config.get("sweep_name"):
        return str(config["sweep_name"])
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return None
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return None
        sweep_dir = Path(hydra_cfg.sweep.dir)
    except (ImportError, ValueError):
        return None
    # outputs/multirun/<date>/<time>: the time alone would collide across days
    if sweep_dir.parent.name[:2].isdigit():
        return f"{sweep_dir.parent.name}_{sweep_dir.name}"
    return sweep_dir.name


def wandb_api_key_configured(env: dict | None = None) -> bool:
    """An API key in WANDB_API_KEY or a ``~/.netrc`` (or $NETRC) entry for the W&B host."""
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = Path(env.get("NETRC") or Path(env.get("HOME", Path.home())) / ".netrc")
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])
