"""``results.json``: the job's record, rewritten atomically at every stage boundary.

A reader never sees a half-written file: each save writes a temporary file and
renames it over the old one. The status is ``running`` until the job ends as
``completed``, ``failed`` or ``interrupted``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import logging
import platform
import time
from pathlib import Path

from runner.cache import write_json_atomic
from runner.errors import InvalidResult
from runner.output.record_check import explain_nulls, record_problems
from runner.output.secrets import scrub, secret_values

log = logging.getLogger(__name__)
PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "hydra-core",
    "scipy",
    "rouge-score",
    "deepspeed",
    "diffusers",
    "nudenet",
    "onnxruntime",
)


# Every top-level key a results.json can hold, with its meaning: the writers are this class, runner/job.py
# and each job kind's pipeline. docs/reference/results.md is generated from this table, and
# tests/test_docs.py checks that every `record.data["..."]` the code writes, and a real record, is listed.
FIELDS = {
    "status": "`running` until the job ends, then `completed`, `failed` or `interrupted`",
    "job_key": "content hash of the resolved config and every data file the job reads: equal keys, same job",
    "started": "UTC time the record was created (ISO 8601, seconds)",
    "finished": "UTC time the job ended, whatever its status",
    "config": "the resolved config, tokens and keys redacted",
    "choices": "the Hydra choice of each config group (method, benchmark, model ...): the report's row labels",
    "overrides": "the command-line overrides of this job, secrets redacted",
    "launch": "world size, rank, host and the Slurm job id where there is one",
    "precision": "the compute precision asked for, the one used and why",
    "metrics": "row (target, retain, unlearned, evaluated, a sweep point ...) -> metric name -> value",
    "evaluation": "row -> suite -> the suite's aggregate numbers behind the metrics",
    "per_example": "row -> suite -> one value per example (answers, scores)",
    "training": "stage (unlearn, finetune_target, distill, attack ...) -> steps, losses, tokens, seconds",
    "timings": "stage -> wall-clock seconds",
    "versions": "python and the versions of the packages that decide the numbers",
    "error": "a failed or interrupted job: message, stage, and the config key, step or traceback where known",
    "reused_from": "the results.json of the identical finished job whose result this record copies",
    "coreset": "the coreset selector, its ratio and seed, the examples it kept, its seconds and the unlearning steps",
    "attack": "the fine-tuning attack: its training and its own task's score before and after",
    "saved_model": "the directory holding the kept weights (save_model=trainable|full)",
    "distill": "task=distill: what the condensation kept of the traces (tokens, fraction, dropped examples)",
    "diffusion": "task=diffusion_attack: the attack's tokens, the defence, per-row detail and the utility checks",
    "connectivity": "analysis=connectivity: the endpoints, the parameters interpolated and the loss along the path",
    "trace": "analysis=trace: the models compared, the prompt sets, the generations and the classifier's scores",
    "current_stage": "the stage the job was in when the record was last written (a lost rank's failure names it)",
    "config_key": "hash of the resolved config alone (the job key before its input files were read): tells this job's directory from another's",
    "null_metrics": "row.metric -> why that metric is null rather than a number",
    "generation": "each generating call: compiled or eager and why, compile seconds, tokens and tokens/s",
    "threads": "the intra-op threads torch used and how they were chosen (threads=auto)",
    "answer_letters": "multiple-choice suites: how often each answer letter was predicted",
    "references": "benchmark.target / retain / retain_logs: the ready models and the log the job used",
    "robustness": "robustness_attack: each attack's settings, its score on the unlearned model and the controls, recovery",
}


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunRecord:
    def __init__(self, run_dir: Path, job_key: str, config: dict, config_key: str | None = None):
        self.path = Path(run_dir) / "results.json"
        self.current: str | None = None  # the stage in progress (or the last one), for a failure's record
        self.secrets = secret_values(config)
        self.data: dict = {
            "status": "running",
            "job_key": job_key,
            "config_key": config_key or job_key,  # the config alone: the same job, before its inputs were read
            "started": _now(),
            "config": scrub(config, self.secrets),  # tokens and keys never reach the file (runner/output/secrets.py)
            "metrics": {},
            "evaluation": {},
            "per_example": {},
            "training": {},
            "timings": {},
            "versions": versions(),
        }
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, self.data)

    @contextlib.contextmanager
    def stage(self, name: str):
        """Time a pipeline stage; the record is saved when it ends."""
        start = time.perf_counter()
        self.current = name
        self.data["current_stage"] = name  # on disk too: a rank lost mid-stage is reported with it
        self.save()
        try:
            yield
        finally:
            self.data["timings"][name] = round(time.perf_counter() - start, 2)
            self.save()

    def finish(self, status: str, error: dict | None = None) -> None:
        """End the record; ``completed`` only when every metric passes ``record_check`` (else InvalidResult)."""
        if status == "completed":
            nulls = explain_nulls(self.data.get("metrics"))  # the declared reasons of the nulls a metric may be
            if nulls:
                self.data["null_metrics"] = {**nulls, **self.data.get("null_metrics", {})}
            if problems := record_problems(self.data):
                raise InvalidResult(problems)
        self.data["status"] = status
        self.data["finished"] = _now()
        if error:
            self.data["error"] = scrub(error, self.secrets)
        self.save()

    def finish_quietly(self, status: str, error: dict | None = None) -> None:
        """``finish`` for a job that is already failing: a record that cannot be written (full or read-only
        disk) is retried without its bulky parts, then given up with a log line; the job's own error stands."""
        try:
            self.finish(status, error)
        except OSError as exc:
            for bulky in ("per_example", "evaluation"):
                self.data[bulky] = {}
            try:
                self.save()
            except OSError:
                log.error(
                    "could not write %s (%s): its status stays `%s` on disk",
                    self.path,
                    exc.strerror or exc,
                    (read_results(self.path) or {}).get("status", "absent"),
                )


def read_results(path: Path) -> dict | None:
    """The record at ``path``; None when missing or not a JSON object (garbage, a list, null, non-UTF-8 bytes)."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def flatten(obj, prefix: str = "", sep: str = ".") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and empty dicts stay values."""
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
