"""Experiment tracking: W&B or TensorBoard mirror what results.json holds; ``logger=none`` does nothing.

``start(cfg, run_dir, choices)`` returns a tracker with
- ``callbacks``: Trainer callbacks for every ``training.train`` call (per-step curves: loss, the
  method's own terms, learning rate, gradient norm), each stage under its own prefix
  (``unlearn/``, ``finetune_target/`` ...: the Trainer's output directory names the stage);
- ``finish(results)``: the final metrics as the run summary, per-example results as a W&B Table,
  then closes the run whatever the job's status (a failed or interrupted job closes as failed).

Everything sent is scrubbed of secrets first (``runner.secrets``). Only the main process tracks.
"""

from __future__ import annotations

import importlib
import logging
import netrc
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf
from transformers import TrainerCallback

from runner import secrets
from runner.errors import ConfigError

log = logging.getLogger(__name__)


def start(cfg: DictConfig, run_dir: Path, choices: dict | None = None):
    """The tracker ``cfg.logger`` asks for (a no-op one on non-main ranks and for ``logger=none``)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    hidden = secrets.secret_values(config)
    secrets.install_log_filter(hidden)  # whatever the logger: log lines never carry a secret
    # Hydra saved the composed config and the command line before the job began
    secrets.scrub_files(sorted((Path(run_dir) / ".hydra").glob("*.yaml")), hidden)
    name = cfg.logger.get("name", "none")
    if name == "none" or not is_main_process():
        return NullTracker()
    clean = secrets.scrub(config, hidden)
    if name == "wandb":
        return WandbTracker(cfg.logger, clean, Path(run_dir), choices or {}, hidden)
    if name == "tensorboard":
        return TensorBoardTracker(cfg.logger, clean, Path(run_dir), hidden)
    raise ConfigError("logger", f"unknown logger `{name}`", "use logger=none, logger=wandb or logger=tensorboard")


def is_main_process() -> bool:
    dist = _optional_module("runner.distributed")
    if dist is not None and hasattr(dist, "is_main_process"):
        return bool(dist.is_main_process())
    return int(os.environ.get("RANK", "0")) == 0


def _optional_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class NullTracker:
    """``logger=none``: no callbacks, nothing written."""

    callbacks: list = []

    def finish(self, results: dict) -> None:
        pass


# ---------------------------------------------------------------- naming and flattening


def flatten(obj, prefix: str = "", sep: str = ".") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}{sep}{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                out.update(flatten(v, key, sep))
            else:
                out[key] = v
    else:
        out[prefix] = obj
    return out


def run_name(config: dict, choices: dict) -> str:
    """method-benchmark-model[-coreset<ratio>][-attack][-decoding]-s<seed>, from Hydra's choices where known."""
    method = choices.get("method") or _class_name(config.get("method") or {}) or "none"
    benchmark = choices.get("benchmark") or config.get("benchmark", {}).get("name", "")
    model = choices.get("model") or config.get("model", {}).get("name", "")
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


def _numbers(logs: dict) -> dict:
    out = {}
    for k, v in logs.items():
        if isinstance(v, bool):
            continue
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _stage(args) -> str:
    # train() gives each stage its own output directory: unlearn, finetune_target, finetune_retain, ...
    return Path(args.output_dir).name or "train"


def summary_of(results: dict) -> dict:
    """The scalars of a results.json worth a run summary: metrics per model, status, timings, stage stats."""
    summary = {"status": results.get("status", "unknown")}
    for row, metrics in (results.get("metrics") or {}).items():
        for metric, value in (metrics or {}).items():
            summary[f"{row}/{metric}"] = value
    for block in ("timings", "training", "coreset", "attack"):
        for key, value in flatten(results.get(block) or {}, block, "/").items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                summary[key] = value
    if results.get("error"):
        summary["error"] = str(results["error"].get("message", ""))[:500]
    return summary


def per_example_rows(per_example: dict) -> tuple[list[str], list[list]]:
    """One row per (model, suite, example): the per-example values of each model, as table columns."""
    metrics: list[str] = []
    rows = []
    for model, suites in (per_example or {}).items():
        for suite, values in (suites or {}).items():
            if not isinstance(values, dict):
                continue
            lists = {k: v for k, v in values.items() if isinstance(v, list)}
            n = max((len(v) for v in lists.values()), default=0)
            for k in lists:
                if k not in metrics:
                    metrics.append(k)
            for i in range(n):
                rows.append((model, suite, i, {k: v[i] for k, v in lists.items() if i < len(v)}))
    columns = ["model", "suite", "index", *metrics]
    return columns, [[m, s, i, *[vals.get(k) for k in metrics]] for m, s, i, vals in rows]


# ---------------------------------------------------------------- W&B


class _WandbCurves(TrainerCallback):
    """Per-step Trainer logs -> W&B, one step axis per stage (each train() call restarts at step 0)."""

    def __init__(self, run):
        self.run = run
        self.stages: set[str] = set()

    def on_log(self, args, state, control, logs=None, **kwargs):
        stage = _stage(args)
        if stage not in self.stages:
            self.run.define_metric(f"{stage}/step")
            self.run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
            self.stages.add(stage)
        values = {f"{stage}/{k}": v for k, v in _numbers(logs or {}).items()}
        values[f"{stage}/step"] = state.global_step
        self.run.log(values)


class WandbTracker:
    def __init__(self, logger_cfg, config: dict, run_dir: Path, choices: dict, hidden: list[str]):
        import wandb

        self.hidden = hidden
        self.log_per_example = bool(logger_cfg.get("log_per_example", True))
        mode = logger_cfg.get("mode", "auto")
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
            project=logger_cfg.get("project") or "unlearn-runner",
            entity=logger_cfg.get("entity") or None,
            group=logger_cfg.get("group") or sweep_group(config),
            tags=[str(t) for t in (logger_cfg.get("tags") or [])],
            name=logger_cfg.get("run_name") or run_name(config, choices),
            job_type=logger_cfg.get("job_type") or "unlearn",
            config=flat,
            dir=str(run_dir),
            settings=settings,
        )
        run_dir.mkdir(parents=True, exist_ok=True)
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
        log.info("W&B run %s (%s) in %s", self.run.name, mode, self.dir)
        self.callbacks = [_WandbCurves(self.run)]

    def finish(self, results: dict) -> None:
        import wandb

        try:
            self.run.summary.update(secrets.scrub(summary_of(results), self.hidden))
            if self.log_per_example and results.get("per_example"):
                columns, rows = per_example_rows(results["per_example"])
                if rows:
                    self.run.log({"per_example": wandb.Table(columns=columns, data=secrets.scrub(rows, self.hidden))})
        except Exception as exc:  # the results are in results.json already: a dashboard error must not fail the job
            log.warning("W&B: could not log the final results (%s)", exc)
        finally:
            self.run.finish(exit_code=0 if results.get("status") == "completed" else 1)
            if self.mode == "offline":
                log.info("W&B offline run kept in %s; upload with `wandb sync %s`", self.dir, self.dir)


# ---------------------------------------------------------------- TensorBoard


class _TensorBoardCurves(TrainerCallback):
    def __init__(self, writer):
        self.writer = writer

    def on_log(self, args, state, control, logs=None, **kwargs):
        stage = _stage(args)
        for k, v in _numbers(logs or {}).items():
            self.writer.add_scalar(f"{stage}/{k}", v, state.global_step)


class TensorBoardTracker:
    """Event files under ``<run_dir>/tensorboard``: curves per stage, config as text, final metrics."""

    def __init__(self, logger_cfg, config: dict, run_dir: Path, hidden: list[str]):
        import yaml
        from torch.utils.tensorboard import SummaryWriter

        self.hidden = hidden
        self.dir = run_dir / (logger_cfg.get("subdir") or "tensorboard")
        self.writer = SummaryWriter(log_dir=str(self.dir))
        self.writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "\n```")
        self.callbacks = [_TensorBoardCurves(self.writer)]

    def finish(self, results: dict) -> None:
        try:
            for key, value in secrets.scrub(summary_of(results), self.hidden).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"final/{key}", value, 0)
                else:
                    self.writer.add_text(f"final/{key}", str(value))
        finally:
            self.writer.close()


# ---------------------------------------------------------------- reading an offline W&B run back


def read_offline_run(path: str | Path) -> dict:
    """The run name, group, config, history and summary stored in an offline W&B run directory.

    wandb 0.31 ships no Python reader for its ``run-<id>.wandb`` transaction log, so this reads
    the format directly: a 7-byte file header, then LevelDB-log records (7-byte header: crc32,
    little-endian length, type FULL/FIRST/MIDDLE/LAST) in 32 KiB blocks, each a ``Record`` protobuf.
    """
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file under {path}")
    out: dict = {"config": {}, "summary": {}, "history": [], "name": None, "group": None, "project": None}
    for payload in _leveldb_records(files[0].read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(name=run.display_name, group=run.run_group, project=run.project, tags=list(run.tags))
            _apply_updates(out["config"], run.config.update, json)
        elif kind == "config":
            _apply_updates(out["config"], record.config.update, json)
        elif kind == "summary":
            _apply_updates(out["summary"], record.summary.update, json)
        elif kind == "history":
            step = {}
            _apply_updates(step, record.history.item, json)
            out["history"].append(step)
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def _apply_updates(target: dict, items, json) -> None:
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)  # nested: a logged dict (a Table's metadata)
        node = target
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json)


def _leveldb_records(data: bytes, block: int = 32768, header: int = 7):
    import struct

    pos, pending = header, b""  # the file begins with ":W&B", a 2-byte magic and a version byte
    while pos + header <= len(data):
        if block - pos % block < header:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        payload = data[pos + header : pos + header + length]
        pos += header + length
        if kind == 1:  # FULL
            yield payload
        elif kind == 2:  # FIRST
            pending = payload
        elif kind == 3:  # MIDDLE
            pending += payload
        elif kind == 4:  # LAST
            yield pending + payload
