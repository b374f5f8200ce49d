"""Utility through lm-eval-harness: ``utility.lm_eval.tasks`` run on the in-memory model.

Any lm-eval task (or group) named in ``utility.lm_eval.tasks`` runs on the target model and on the
unlearned model (an evaluation-only job: on the evaluated one), through lm-eval's ``HFLM`` wrapped
around the model object the job already holds: no reload, the job's precision (bf16 as autocast,
as the runner computes it) and ``eval.batch_size``. Each task's headline metric (the first of its
``metric_list``, first filter) is recorded with its standard error as ``lm_eval_<task>`` and
``lm_eval_<task>_stderr``, and under ``evaluation.<row>.lm_eval.<task>``.

``mmlu`` keeps the runner's own scorer (runner/benchmarks/mmlu.py: the same prompt as lm-eval's,
question for question, and several times faster); its standard error is lm-eval's for a mean,
sqrt(p (1 - p) / (n - 1)).

Every task is loaded at config check (lm-eval builds a task by loading its data), so a task lm-eval
does not know, or whose data is not available (offline, no local copy), stops the job there with one
error naming the task and the reason. ``include_path`` adds a folder of task YAMLs (local data sets
such as ``dataset_path: json`` with ``data_files``); ``include_defaults: false`` skips indexing
lm-eval's ~15,000 built-in task files (about a minute on a loaded CPU) when only those are used.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError

KEY = "utility.lm_eval.tasks"
OWN_SCORER = "mmlu"
_managers: dict[tuple, object] = {}  # (include_path, include_defaults) -> TaskManager: indexing is slow


def settings(cfg: DictConfig):
    return OmegaConf.select(cfg, "utility.lm_eval")


def tasks(cfg: DictConfig) -> list[str]:
    node = settings(cfg)
    return [] if node is None or not node.get("tasks") else [str(t) for t in node.tasks]


def _manager(node):
    try:
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise ConfigError(
            KEY, f"lm-eval-harness is not installed ({exc})", "pip install 'unlearn-runner[lmeval]', or tasks: []"
        ) from None
    include = node.get("include_path")
    key = (None if include is None else str(include), bool(node.include_defaults))
    if key not in _managers:
        _managers[key] = TaskManager(include_path=key[0], include_defaults=key[1])
    return _managers[key]


def check_config(cfg: DictConfig) -> None:
    """Every task is known to lm-eval and its data loads here (offline: from a local copy or the cache)."""
    names = tasks(cfg)
    if not names:
        return
    node = settings(cfg)
    if len(set(names)) != len(names):
        raise ConfigError(KEY, f"names a task twice: {names}", "list each task once")
    for key in ("limit", "bootstrap_iters"):
        value = node.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(
                f"utility.lm_eval.{key}", f"must be a whole number >= 0 or null, got {value!r}", "e.g. 1000"
            )
    others = [t for t in names if t != OWN_SCORER]
    if others:
        manager = _manager(node)
        known = set(manager.all_tasks)
        for name in others:
            if name not in known:
                where = "its built-in tasks" if node.include_defaults else "utility.lm_eval.include_path"
                raise ConfigError(
                    KEY,
                    f"lm-eval knows no task `{name}` (looked in {where})",
                    "check the name (lm-eval --tasks list), or add its YAML under utility.lm_eval.include_path",
                )
            try:
                manager.load_task_or_group([name])  # builds the task, which loads its data set
            except Exception as exc:  # a download refused offline, a missing local file, a bad YAML: one message
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                raise ConfigError(
                    KEY,
                    f"task `{name}` cannot load its data ({reason})",
                    "run once with network to fill the Hugging Face cache, point its YAML at a local copy, or drop it",
                ) from None
    if OWN_SCORER in names:
        from runner.benchmarks.mmlu import MmluSuite

        MmluSuite(node.mmlu, tokenizer=None, key="utility.lm_eval.mmlu")  # subjects and files exist


def evaluate(model, tokenizer, cfg: DictConfig, precision: str) -> dict:
    """``{task: {"metric", "value", "stderr", "n"}}`` for every configured task, on ``model`` as it is now."""
    names, node = tasks(cfg), settings(cfg)
    out = {}
    if OWN_SCORER in names:
        out[OWN_SCORER] = _runner_mmlu(model, tokenizer, node, cfg.eval.batch_size, precision)
    others = [t for t in names if t != OWN_SCORER]
    if others:
        import lm_eval
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(
            pretrained=model,
            tokenizer=tokenizer,
            batch_size=int(cfg.eval.batch_size),
            mixed_precision_dtype="bfloat16" if precision == "bf16" else None,
        )
        # lm-eval seeds Python's, NumPy's and torch's global generators (its own reproducibility); the
        # job's draws after this evaluation must not depend on whether a task ran, so they are restored
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
            result = lm_eval.simple_evaluate(
                model=lm,
                tasks=others,
                task_manager=_manager(node),
                limit=node.get("limit"),
                bootstrap_iters=int(node.bootstrap_iters),
                log_samples=False,
            )
        random.setstate(py_state)
        np.random.set_state(np_state)
        model.eval()  # HFLM leaves it so, but the job must not depend on that
        for name in others:
            out[name] = headline(result, name)
    return out


def headline(result: dict, name: str) -> dict:
    """A task's (or group's) first configured metric on its first filter, with its standard error."""
    entry = result.get("groups", {}).get(name) or result["results"][name]
    metric = None
    config = result.get("configs", {}).get(name)
    if config and config.get("metric_list"):
        metric = config["metric_list"][0]["metric"]
    keys = [k for k in entry if "," in k and "_stderr," not in k]
    if metric is not None:
        keys = [k for k in keys if k.split(",", 1)[0] == metric] or keys
    if not keys:
        raise ValueError(f"lm-eval reported no metric for task {name}: {sorted(entry)}")
    chosen = keys[0]
    metric, flt = chosen.split(",", 1)
    stderr = entry.get(f"{metric}_stderr,{flt}")
    n = result.get("n-samples", {}).get(name, {}).get("effective")
    return {
        "metric": metric if flt == "none" else chosen,
        "value": float(entry[chosen]),
        "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,  # "N/A" with bootstrap_iters=0
        "n": n,
    }


def _runner_mmlu(model, tokenizer, node, batch_size: int, precision: str) -> dict:
    from runner.benchmarks.mmlu import MmluSuite

    agg, _ = MmluSuite(node.mmlu, tokenizer, key="utility.lm_eval.mmlu").evaluate(model, batch_size, precision)
    p, n = agg["accuracy"], agg["n"]
    return {"metric": "acc", "value": p, "stderr": math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else None, "n": n}


def summary(results: dict) -> dict[str, float]:
    """The record's metrics: ``lm_eval_<task>`` and ``lm_eval_<task>_stderr`` (where lm-eval gave one)."""
    out = {}
    for name, r in results.items():
        out[f"lm_eval_{name}"] = r["value"]
        if r["stderr"] is not None:
            out[f"lm_eval_{name}_stderr"] = r["stderr"]
    return out
