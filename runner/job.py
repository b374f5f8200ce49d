"""One job, whatever its kind: config checks, the record, reuse of an identical finished job, signals and
failures around the kind's own pipeline (unlearning, evaluation only, distillation, analysis, diffusion attack:
runner/job_kinds.py)."""

from __future__ import annotations

import contextlib
import copy
import logging
import signal
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from runner import config as config_checks
from runner import distributed, job_kinds, rundir, threads
from runner import precision as precision_choice
from runner.cache import clean_stale, write_json_atomic
from runner.cache_schema import JOB_INDEX, read_checked, set_aside_file
from runner.decoding import engine as generation_engine
from runner.errors import ConfigError, InvalidResult, JobInterrupted, TrainingDiverged
from runner.metrics.mcq import CONSTANT_LETTER_SHARE, answer_letters
from runner.output import tracking
from runner.output.console import constant_letter_warnings, letters_table, metrics_table
from runner.output.record import RunRecord, read_results
from runner.output.record_check import record_problems
from runner.output.secrets import install_log_filter, scrub_overrides, secret_values

log = logging.getLogger(__name__)


def run(cfg: DictConfig, run_dir: str | Path, choices: dict | None = None, overrides: list | None = None) -> dict:
    """Run the job described by ``cfg`` in ``run_dir``; returns the final ``results.json`` content.

    ``choices`` (Hydra's group choices, e.g. method=npo) and ``overrides`` (the command line) are
    recorded so that reports can label runs; they do not change what is computed.
    """
    run_dir = Path(run_dir).resolve()
    if not distributed.is_main_process():  # the ranks share rank 0's directory; rank 0 alone holds it
        return _run(cfg, run_dir, choices, overrides)
    with rundir.hold(run_dir):  # a second live job in this directory stops here, before writing anything
        return _run(cfg, run_dir, choices, overrides)


def _run(cfg: DictConfig, run_dir: Path, choices: dict | None, overrides: list | None) -> dict:
    main = distributed.is_main_process()
    hidden = _hide_secrets(cfg)
    as_composed = copy.deepcopy(cfg)  # Hydra's .hydra/config.yaml, written once the directory is claimed
    try:
        kind = job_kinds.kind_of(cfg)
        job_kinds.validate(cfg)
        # `auto` becomes fp32 or bf16 for this device before anything keys on it: every stage, cache and
        # the job key see the precision really used
        chosen_precision = precision_choice.resolve(cfg.precision, distributed.device())
        if main:
            log.info("precision: %s (asked %s; %s)", chosen_precision["used"], cfg.precision, chosen_precision["why"])
        cfg.precision = chosen_precision["used"]
        kind.settle(cfg)
        cache_dir = _cache_dir(cfg)
        if kind.language_model:  # a diffusion job's `generation` node is its image sampler's
            generation_engine.configure(cfg.get("generation"), cache_dir)
        chosen_threads = threads.apply(cfg.get("threads", "auto"))
        key = job_kinds.job_key(cfg)  # reads (and checks) every input file: before any expensive stage
        same_job = {key, config_checks.config_key(as_composed)}
    except ConfigError as exc:
        if main:  # a sweep point that fails its checks still leaves a record (a † row in the report)
            record_failure(as_composed, run_dir, exc, choices, overrides, held=True)
        raise
    if main:  # the lock is held: refuse another job's directory, then write the first file
        rundir.claim(run_dir, same_job, bool(cfg.get("overwrite", False)))
        rundir.save_hydra_files(run_dir, as_composed, hidden)
    strategy = distributed.build_strategy(cfg.get("distributed"))
    strategy.setup()  # process group (several ranks); rank 0 alone writes below
    if main:
        clean_stale(cache_dir)  # temporary directories of builds killed earlier

    finished = distributed.from_main(_finished_job(cache_dir, key, run_dir))
    if finished is not None:
        if main:
            log.info("identical job already completed: %s; reporting its result", finished["_path"])
            if Path(finished["_path"]).resolve() != run_dir / "results.json":
                # a copy in this run dir, so a report over this sweep still sees the point
                # labelled with this job's own choices: the original may have been launched otherwise
                reused = {k: v for k, v in finished.items() if k != "_path"}
                reused |= {
                    "choices": {k: v for k, v in (choices or {}).items() if not k.startswith("hydra")},
                    "overrides": scrub_overrides(list(overrides or []), hidden),
                    "precision": chosen_precision,  # same precision used; this job's own way of asking for it
                    "reused_from": finished["_path"],
                }
                write_json_atomic(run_dir / "results.json", reused)
            print(metrics_table(finished["metrics"]))
            _print_letters(finished.get("answer_letters"))
        return finished

    record = (RunRecord if main else _RankRecord)(
        run_dir, key, OmegaConf.to_container(cfg, resolve=True), config_checks.config_key(as_composed)
    )
    record.data["launch"] = distributed.launch_info()  # world size, host, Slurm job id
    record.data["precision"] = chosen_precision
    record.data["threads"] = chosen_threads
    record.data["choices"] = {k: v for k, v in (choices or {}).items() if not k.startswith("hydra")}
    record.data["overrides"] = scrub_overrides(list(overrides or []), record.secrets)
    record.save()  # labels on disk from the start: a job killed while loading still shows its method
    # W&B / TensorBoard (main process only): its config node, and the job's config as the run's record
    tracker = tracking.start(
        cfg.get("logger"), run_dir, OmegaConf.to_container(cfg, resolve=True), record.data["choices"]
    )
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        _install_sigterm()
        distributed.seed_process(cfg.seed)  # seed + rank: each rank draws its own
        kind.run(cfg, run_dir, cache_dir, record, strategy, tracker.callbacks)  # the kind's own pipeline
        letters = answer_letters(record.data.get("per_example"))
        if letters:  # multiple-choice suites: a constant-letter answerer must not pass for a score
            record.data["answer_letters"] = letters
        if generation_engine.settings().calls:  # each generating call's compile decision, compile seconds, tok/s
            record.data["generation"] = generation_engine.summary()
        record.finish("completed")
    except (KeyboardInterrupt, JobInterrupted, SystemExit):  # SystemExit: submitit's requeue on preemption
        _record_interrupted(record, main)
        raise
    except TrainingDiverged as exc:
        record.finish_quietly("failed", {"message": str(exc), "stage": exc.stage, "step": exc.step})
        raise
    except ConfigError as exc:
        record.finish_quietly("failed", {"message": str(exc), "setting": exc.key, "stage": record.current})
        raise
    except InvalidResult as exc:
        record.finish_quietly("failed", {"message": str(exc), "problems": exc.problems, "stage": "record"})
        raise
    except Exception as exc:
        if signal_received():  # raised while the signal unwound the stage (a library's cleanup): still the signal
            _record_interrupted(record, main)
            raise JobInterrupted(f"signal {_SIGNALLED[0]}") from exc
        error = {"message": str(exc), "type": type(exc).__name__, "stage": record.current}
        record.finish_quietly("failed", error | {"traceback": traceback.format_exc()})
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        tracker.finish(record.data)  # closes the W&B run for every status
    if main:
        try:  # the index only speeds up reruns: a read-only or full cache must not fail a completed job
            write_json_atomic(cache_dir / "jobs" / f"{key}.json", {"results": str(record.path)})
        except OSError as exc:
            log.warning("could not index the finished job in the cache (%s): %s", exc.strerror or exc, cache_dir)
        print(metrics_table(record.data["metrics"]))
        _print_letters(record.data.get("answer_letters"))
    return record.data


def _record_interrupted(record: RunRecord, main: bool) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):  # a repeated signal (Slurm, srun) must not cut the write
        signal.signal(signum, signal.SIG_IGN)
    record.finish_quietly("interrupted", {"message": "stopped by a signal (Ctrl-C, SIGTERM, Slurm preemption)"})
    if main:
        log.warning("job interrupted; results.json marked `interrupted` (%s)", record.path)


def _print_letters(letters: dict | None) -> None:
    if letters:
        print(letters_table(letters))
        for line in constant_letter_warnings(letters, CONSTANT_LETTER_SHARE):
            log.warning(line)


def _cache_dir(cfg) -> Path:
    """The cache directory, created if missing (a read-only one that exists is fine: every entry may be a hit)."""
    path = Path(str(cfg.paths.cache_dir)).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            "paths.cache_dir",
            f"{path} does not exist and cannot be created ({exc.strerror or exc})",
            "point paths.cache_dir (or $RUNNER_CACHE) at a writable directory",
        ) from None
    return path


def record_failure(cfg, run_dir: str | Path, exc: Exception, choices=None, overrides=None, held: bool = False) -> None:
    """A ``failed`` results.json for a job stopped by its checks before the pipeline (no record existed yet), written
    only while holding the run directory (``held``: the caller does) and never over another job's record."""
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
        key = config_checks.config_key(cfg)
    except Exception:  # an interpolation that does not resolve is itself the error
        config, key = OmegaConf.to_container(cfg, resolve=False), "unresolved"
    run_dir = Path(run_dir)
    try:
        with contextlib.nullcontext() if held else rundir.hold(run_dir):
            if rundir.other_job(run_dir, {key}) is not None and not cfg.get("overwrite", False):
                log.error("not recording this failure in %s: it holds another job's record", run_dir)
                return
            rundir.save_hydra_files(run_dir, cfg, secret_values(config))
            _write_failure(run_dir, key, config, exc, choices, overrides)
    except ConfigError as busy:  # another live job holds the directory: its record stays as it is
        log.error("not recording this failure: %s", busy)
    except OSError as err:  # the run directory cannot be written: the console line is all there is
        log.error("could not write %s/results.json (%s)", run_dir, err.strerror or err)


def record_rank_failure(run_dir: str | Path, ended) -> str:
    """Mark the record of a job whose rank ``ended.rank`` was lost ``failed``, naming the rank, how it ended (exit
    code or signal) and the stage; returns the one line for the console.

    The launcher stops the other ranks once one is lost, so rank 0's record may say `interrupted` (or `running`,
    when rank 0 itself was killed, or `failed` at a collective the lost rank never joined): the lost rank is the
    cause. A record rank 0 ended on its own (`completed`, or `failed` by rank 0 first) is left as it is."""
    path = Path(run_dir) / "results.json"
    data = read_results(path)
    stage = (data or {}).get("current_stage") or "startup"
    message = f"{ended.how()} during stage `{stage}`; the other ranks were stopped (see {run_dir})"
    status = (data or {}).get("status")
    if data is None or status == "completed" or (status == "failed" and ended.rank == 0):
        return message
    error = {"message": message, "rank": ended.rank, "stage": stage}
    error |= {"signal": ended.signal} if ended.signal else {"exit_code": ended.returncode}
    if data.get("error"):
        error["then"] = data["error"]  # what rank 0 recorded when it was stopped
    data |= {"status": "failed", "error": error}
    try:
        write_json_atomic(path, data)
    except OSError as exc:
        log.error("could not write %s (%s)", path, exc.strerror or exc)
    return message


def _write_failure(run_dir: Path, key: str, config: dict, exc: Exception, choices, overrides) -> None:
    record = RunRecord(run_dir, key, config)
    record.data["launch"] = distributed.launch_info()
    record.data["choices"] = {k: v for k, v in (choices or {}).items() if not k.startswith("hydra")}
    record.data["overrides"] = scrub_overrides(list(overrides or []), record.secrets)
    error = {"message": str(exc), "stage": "config"}
    if isinstance(exc, ConfigError):
        error["setting"] = exc.key  # the config key (a field named "key" would be redacted as a credential)
    record.finish_quietly("failed", error)


def _hide_secrets(cfg) -> list[str]:
    """The config's credential values, kept out of every log line from now on, whatever happens to the job next."""
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:
        config = OmegaConf.to_container(cfg, resolve=False)
    hidden = secret_values(config)
    install_log_filter(hidden)
    return hidden


class _RankRecord(RunRecord):
    """Ranks other than 0 keep their record in memory: rank 0 alone writes results.json."""

    def save(self) -> None:
        pass


def _finished_job(cache_dir: Path, key: str, run_dir: Path | None = None) -> dict | None:
    """The completed result of an identical job: the cache's index, or this run directory itself.

    The run directory counts too, so a sweep resubmitted into the same directory (Slurm
    requeue, a rerun after a cache clean) skips its finished points. A record is reused only when it
    passes the same check as a record being completed (every metric a finite number or an explained
    null); a damaged index file is set aside, a damaged record is left alone and the job runs again.
    """
    index = cache_dir / "jobs" / f"{key}.json"
    pointer, problem = read_checked(index, JOB_INDEX) if index.exists() else (None, None)
    if problem:
        set_aside_file(index, "the finished-job index", problem)
    for path in ((pointer or {}).get("results"), run_dir and run_dir / "results.json"):
        result = read_results(Path(path)) if path else None
        if not (result and result.get("status") == "completed" and result.get("job_key") == key):
            continue
        problems = record_problems(result)
        if problems:
            log.warning("not reusing the completed record %s: it holds %s; running the job again", path, problems[0])
            continue
        result["_path"] = str(path)
        return result
    return None


# the signal this process's job received (the handler's first call); set, the job ends `interrupted` even when
# what propagates is another error raised while the stage unwound
_SIGNALLED: list[int] = []


def signal_received() -> bool:
    return bool(_SIGNALLED)


def _install_sigterm():
    """SIGTERM (Slurm's time-out, `kill`) and SIGINT (Ctrl-C) become one exception, so the record can say
    `interrupted`; a repeat (Slurm signals every process, a launcher forwards the same signal) is ignored
    instead of cutting the record's write short."""
    _SIGNALLED.clear()

    def handler(signum, frame):
        if _SIGNALLED:
            return
        _SIGNALLED.append(signum)
        raise JobInterrupted(f"signal {signum}")

    signal.signal(signal.SIGINT, handler)
    return signal.signal(signal.SIGTERM, handler)
