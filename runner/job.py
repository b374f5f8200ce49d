"""One job, top to bottom: config -> model -> benchmark -> reference models -> unlearn -> evaluate -> record."""

from __future__ import annotations

import logging
import signal
import traceback
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from runner import config as config_checks
from runner.benchmarks.tofu import TofuBenchmark
from runner.cache import content_key, write_json_atomic
from runner.data.qa import PromptFormat
from runner.errors import ConfigError, JobInterrupted, TrainingDiverged
from runner.methods.reference import UnlearnData
from runner.models import load_model, model_identity, set_trainable, trainable_state
from runner.prepare import ReferenceModel
from runner.results import RunRecord, read_results
from runner.table import metrics_table
from runner.unlearn import unlearn

log = logging.getLogger(__name__)


def run(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Run the job described by ``cfg`` in ``run_dir``; returns the final ``results.json`` content."""
    config_checks.validate(cfg)
    run_dir = Path(run_dir).resolve()
    cache_dir = Path(cfg.paths.cache_dir).expanduser().resolve()
    key = config_checks.job_key(cfg)

    finished = _finished_job(cache_dir, key)
    if finished is not None:
        log.info("identical job already completed: %s; reporting its result", finished["_path"])
        print(metrics_table(finished["metrics"]))
        return finished

    record = RunRecord(run_dir, key, OmegaConf.to_container(cfg, resolve=True))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        _install_sigterm()
        _pipeline(cfg, run_dir, cache_dir, record)
        record.finish("completed")
    except (KeyboardInterrupt, JobInterrupted):
        record.finish("interrupted", {"message": "stopped by a signal (Ctrl-C or SIGTERM)"})
        log.warning("job interrupted; results.json marked `interrupted` (%s)", record.path)
        raise
    except TrainingDiverged as exc:
        record.finish("failed", {"message": str(exc), "stage": exc.stage, "step": exc.step})
        raise
    except Exception as exc:
        record.finish("failed", {"message": str(exc), "type": type(exc).__name__, "traceback": traceback.format_exc()})
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    write_json_atomic(cache_dir / "jobs" / f"{key}.json", {"results": str(record.path)})
    print(metrics_table(record.data["metrics"]))
    return record.data


def _pipeline(cfg: DictConfig, run_dir: Path, cache_dir: Path, record: RunRecord) -> None:
    torch.manual_seed(cfg.seed)
    method = build_method(cfg.method)  # before any expensive stage, so a bad method option fails fast
    with record.stage("load_model"):
        model, tokenizer = load_model(cfg.model, cache_dir)
        set_trainable(model, cfg.model.trainable_layers)
        identity = model_identity(cfg.model)

    with record.stage("build_benchmark"):
        bench = TofuBenchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
        pad_id = tokenizer.pad_token_id
        eval_key = content_key(
            {
                "bench": bench.identity(),
                "eval": OmegaConf.to_container(cfg.eval, resolve=True),
                "precision": cfg.precision,
            }
        )

    # TOFU's reference models: retain (the gold standard) and target (the model to unlearn from)
    references = {
        "retain": ReferenceModel("retain", bench.retain_rows, identity, bench.encoding(), cfg, cache_dir),
        "target": ReferenceModel(
            "target", bench.forget_rows + bench.retain_rows, identity, bench.encoding(), cfg, cache_dir
        ),
    }
    evaluations = {}
    with record.stage("prepare"):
        missing = [kind for kind, ref in references.items() if not ref.entry.ready()]
        base_state = trainable_state(model) if missing else None
        for kind, ref in references.items():
            if kind in missing:
                record.data["training"][f"finetune_{kind}"] = ref.build(
                    model, base_state, bench.encode, pad_id, run_dir
                )
            else:
                ref.load_into(model)
            evaluations[kind] = ref.evaluation(eval_key, lambda: bench.evaluate(model, cfg.eval, cfg.precision))
        del base_state

    with record.stage("unlearn"):
        references["target"].load_into(model)
        data = UnlearnData(
            model=model,
            forget=bench.encode(bench.forget_rows),
            retain=bench.encode(bench.retain_rows),
            encode=bench.encode,
            pad_id=pad_id,
            batch_size=cfg.eval.batch_size,
            precision=cfg.precision,
            seed=cfg.seed,
            forget_rows=bench.forget_rows,
        )
        record.data["training"]["unlearn"] = unlearn(method, data, cfg.unlearn, cfg.seed, run_dir / "unlearn")

    with record.stage("evaluate"):
        evaluations["unlearned"] = bench.evaluate(model, cfg.eval, cfg.precision)

    order = ("target", "retain", "unlearned")
    record.data["metrics"] = {k: bench.summarize(evaluations[k], evaluations["retain"]) for k in order}
    record.data["evaluation"] = {k: evaluations[k]["suites"] for k in order}
    record.data["per_example"] = {k: evaluations[k]["per_example"] for k in order}


def build_method(method_cfg):
    """``instantiate`` the method; a ConfigError from its constructor surfaces as itself, not wrapped by Hydra."""
    try:
        return instantiate(method_cfg)
    except InstantiationException as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def _finished_job(cache_dir: Path, key: str) -> dict | None:
    pointer = read_results(cache_dir / "jobs" / f"{key}.json")
    if not pointer:
        return None
    result = read_results(Path(pointer["results"]))
    if result and result.get("status") == "completed" and result.get("job_key") == key:
        result["_path"] = pointer["results"]
        return result
    return None


def _install_sigterm():
    """SIGTERM (Slurm's time-out, `kill`) becomes an exception so the record can say `interrupted`."""

    def handler(signum, frame):
        raise JobInterrupted(f"signal {signum}")

    return signal.signal(signal.SIGTERM, handler)
