"""The unlearning job (``task=unlearn``): model -> benchmark -> fine-tuned models -> [coreset] -> unlearn
-> [save weights] -> evaluate -> [robustness battery] -> [attack -> evaluate] -> record. ``runner.job`` runs it inside the job's record.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from omegaconf import DictConfig

from runner import distributed, references
from runner.attacks import run_attack
from runner.benchmarks.base import Benchmark, build_benchmark
from runner.cache import content_key
from runner.cache_schema import evaluation_check
from runner.components import build
from runner.coreset import select_coreset
from runner.data.qa import PromptFormat
from runner.errors import ConfigError
from runner.finetuned import FinetunedModel, cached_json
from runner.job_evaluation import evaluation_key, summarize, with_utility
from runner.methods.base import Method, UnlearnData
from runner.models import load_state, set_trainable, trainable_state
from runner.output.record import RunRecord
from runner.robustness import ProbeContext, run_battery
from runner.robustness import check_data as check_robustness_data
from runner.saved_model import save_run_model
from runner.unlearn import unlearn

log = logging.getLogger(__name__)


def run_unlearning(
    cfg: DictConfig,
    run_dir: Path,
    cache_dir: Path,
    record: RunRecord,
    strategy: distributed.Strategy,
    callbacks: list = (),
) -> None:
    """The unlearning pipeline; fills ``record`` (saved by the caller)."""
    method = build(cfg.method, Method, "method")  # before any expensive stage: a bad method option fails fast
    with record.stage("load_model"):
        model, tokenizer = references.load_job_model(cfg, cache_dir)  # benchmark.target's weights where given
        model.to(distributed.device())  # this rank's GPU (evaluation runs before any trainer would move it)
        set_trainable(model, cfg.model.trainable_layers)

    with record.stage("build_benchmark"):
        bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt), cache_dir)
        if references.record_entry(bench):
            record.data["references"] = references.record_entry(bench)
        pad_id = tokenizer.pad_token_id
        eval_key = evaluation_key(cfg, bench)
        # the battery's checks that need the forget answers (prefill length, k, GCG targets), before any training
        check_robustness_data(cfg.get("robustness_attack"), bench, tokenizer, bench.fmt, cfg.benchmark.max_length)

    if distributed.is_main_process():
        note = cost_note(bench, distributed.device(), evaluations=len(bench.finetuned_models) + 1)
        if note:
            log.warning(note)
    # named for what it does: fine-tune the reference models, or (WMDP: nothing to fine-tune) evaluate the loaded model
    with record.stage("finetuned_models" if bench.finetuned_models else "evaluate_loaded_model"):
        evaluations, start, refs = _finetuned_models(
            cfg, model, bench, pad_id, eval_key, cache_dir, run_dir, record, strategy, callbacks
        )

    forget_rows, forget, unlearn_cfg = bench.forget_rows, bench.encode(bench.forget_rows), cfg.unlearn
    if cfg.get("coreset") is not None:  # unlearn with part of the forget set (runner/coreset/)
        with record.stage("coreset"):
            chosen = select_coreset(
                cfg.coreset,
                model=model,
                rows=forget_rows,
                encoded=forget,
                encode=bench.encode,
                pad_id=pad_id,
                seed=cfg.seed,
                precision=cfg.precision,
                batch_size=cfg.eval.batch_size,
                train_cfg=cfg.unlearn,
            )
            forget_rows, forget, unlearn_cfg = chosen.rows, chosen.encoded, chosen.train_cfg
            record.data["coreset"] = chosen.record

    with record.stage("unlearn"):
        data = UnlearnData(
            model=model,
            forget=forget,
            retain=bench.encode(bench.retain_rows),
            encode=bench.encode,
            pad_id=pad_id,
            eval_batch_size=cfg.eval.batch_size,
            precision=cfg.precision,
            seed=cfg.seed,
            forget_rows=forget_rows,
            tokenizer=tokenizer,
            fmt=PromptFormat.from_cfg(cfg.model.prompt),
            cache_dir=cache_dir,
            model_identity=references.job_model_identity(cfg),
        )
        record.data["training"]["unlearn"] = unlearn(
            method, data, unlearn_cfg, run_dir / "unlearn", callbacks=list(callbacks), strategy=strategy
        )

    attack = None
    if cfg.get("finetune_attack") is not None:  # fine-tune the unlearned model (runner/attacks/)
        attack = functools.partial(
            run_attack,
            cfg.finetune_attack,
            model=model,
            tokenizer=tokenizer,
            fmt=PromptFormat.from_cfg(cfg.model.prompt),
            bench=bench,
            seed=cfg.seed,
            precision=cfg.precision,
            eval_batch_size=cfg.eval.batch_size,
            trainable_layers=cfg.model.trainable_layers,
            strategy=strategy,
            output_dir=run_dir / "attack",
        )
    if not distributed.is_main_process():  # rank 0 evaluates and records; the others only train
        if attack is not None:
            attack(callbacks=[])
        return
    if cfg.save_model != "none":  # the unlearned weights, before any attack (runner/saved_model.py)
        with record.stage("save_model"):
            record.data["saved_model"] = str(
                save_run_model(model, tokenizer, run_dir, cfg.save_model, cfg.model, start)
            )
    with record.stage("evaluate"):
        evaluations["unlearned"] = with_utility(bench.evaluate(model, cfg.eval, cfg.precision), model, bench, cfg)

    if cfg.get("robustness_attack"):  # attacks that probe without training (runner/robustness/)
        with record.stage("robustness"):
            record.data["robustness"] = _robustness(cfg, model, tokenizer, bench, refs)

    if attack is not None:  # and evaluate again
        with record.stage("attack"):
            record.data["attack"] = attack(callbacks=list(callbacks))
            evaluations["attacked"] = bench.evaluate(model, cfg.eval, cfg.precision)

    baselines = {k: v for k, v in evaluations.items() if k not in ("unlearned", "attacked")}
    record.data["metrics"] = {k: summarize(bench, v, baselines) for k, v in evaluations.items()}
    record.data["evaluation"] = {k: v["suites"] for k, v in evaluations.items()}
    record.data["per_example"] = {k: v["per_example"] for k, v in evaluations.items()}


def _robustness(cfg, model, tokenizer, bench: Benchmark, refs: dict) -> dict:
    """The battery on the unlearned model, then on the target and retain models as controls; the unlearned
    weights are back in ``model`` afterwards."""
    unlearned = trainable_state(model)
    caps = getattr(bench, "max_new_tokens", {})
    ctx = ProbeContext(
        model=model,
        tokenizer=tokenizer,
        fmt=bench.fmt,
        rows=bench.forget_rows,
        precision=cfg.precision,
        batch_size=cfg.eval.batch_size,
        seed=cfg.seed,
        max_new_tokens=caps.get("forget", 64) if isinstance(caps, dict) else 64,
        max_length=cfg.benchmark.max_length,
    )
    controls = {kind: functools.partial(_load_cached, ref, model) for kind, ref in refs.items()}
    return run_battery(cfg.robustness_attack, ctx, controls, restore=lambda: load_state(model, unlearned))


def _finetuned_models(
    cfg,
    model,
    bench: Benchmark,
    pad_id: int,
    eval_key: str,
    cache_dir: Path,
    run_dir: Path,
    record,
    strategy,
    callbacks=(),
) -> dict:
    """Build (or load from the cache) the benchmark's fine-tuned models and evaluate each once.

    Returns evaluations in report order: "target" (the model unlearning starts from) first, the
    target's cached weights file (None without a target), and the fine-tuned models by kind. On return the
    model holds the target's weights. A benchmark without a "target" model unlearns the loaded model itself,
    whose evaluation is cached under its identity; so does a job given a ready target (``benchmark.target``:
    the loaded weights are its). A ready retain model (``benchmark.retain``) is loaded beside the model for
    its evaluation only (runner/references.py).
    """
    identity = references.job_model_identity(cfg)
    refs = {
        kind: FinetunedModel(
            kind,
            rows,
            identity,
            bench.encoding(),
            benchmark=str(cfg.benchmark.name),
            finetune_cfg=cfg.benchmark.finetune,
            trainable_layers=cfg.model.trainable_layers,
            precision=cfg.precision,
            cache_dir=cache_dir,
        )
        for kind, rows in bench.finetuned_models.items()
    }
    evaluate = functools.partial(bench.evaluate, model, cfg.eval, cfg.precision)

    def evaluate_target() -> dict:  # the model unlearning starts from also gets the utility tasks
        return with_utility(evaluate(), model, bench, cfg)

    check = evaluation_check(bench.summarize)  # a cached evaluation is trusted only if its metrics are numbers
    main = distributed.is_main_process()  # rank 0 evaluates; every rank fine-tunes (collective)
    evaluations = {}
    # the loaded weights, kept only while some reference must be built from them or restored after
    cached = distributed.from_main({kind: ref.entry.ready() for kind, ref in refs.items()} if main else None)
    need_base = not all(cached.values()) or (refs and "target" not in refs)
    base_state = trainable_state(model) if need_base else None
    if "target" not in refs and main:
        key = content_key({"model": identity, "trainable_layers": cfg.model.trainable_layers, "eval": eval_key})
        evaluations["target"] = cached_json(
            cache_dir / "evaluations" / f"{key}.json", evaluate_target, "the loaded model", check
        )
    try:
        for kind, ref in refs.items():
            if cached[kind]:
                _load_cached(ref, model)
            else:
                record.data["training"][f"finetune_{kind}"] = ref.build(
                    model, base_state, bench.encode, pad_id, run_dir, callbacks=list(callbacks), strategy=strategy
                )
            if main:
                evaluations[kind] = ref.evaluation(eval_key, evaluate_target if kind == "target" else evaluate, check)
    finally:
        for ref in refs.values():
            ref.entry.abandon()  # locks still held by entries this job was to build (none after a normal run)
    if "retain" in bench.ready_models and main:  # a hub id or directory, evaluated beside the loaded model
        evaluations["retain"] = references.evaluate_ready(
            "retain", cfg, bench, eval_key, cache_dir, lambda m: bench.evaluate(m, cfg.eval, cfg.precision)
        )
    if "target" in refs:
        _load_cached(refs["target"], model)
    elif refs:
        load_state(model, base_state)
    return evaluations, (str(refs["target"].state_path) if "target" in refs else None), refs


def _load_cached(ref: FinetunedModel, model) -> None:
    """Load a cached fine-tuned model; an entry that passed its checks but does not load is set aside, named."""
    try:
        ref.load_into(model)
    except Exception as exc:  # SafetensorError, OSError, a missing tensor: the entry is bad, not the job
        aside = ref.entry.set_aside(f"does not load: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        raise ConfigError(
            "paths.cache_dir",
            f"the cached {ref.entry.what} ({ref.entry.path}) does not load and was moved aside to {aside}",
            "run the job again: it rebuilds the entry",
        ) from exc


LARGE = 2.0  # a job whose evaluations score this many times the default job's rows is announced


def cost_note(bench: Benchmark, device, evaluations: int) -> str | None:
    """On a CPU, a line saying how much larger than the default job's evaluation this job's is (forget05: its
    200 forget rows scored for every model), before the first model is fine-tuned or evaluated."""
    rows, default = bench.evaluated_rows, bench.default_evaluated_rows
    if getattr(device, "type", str(device)) != "cpu" or not rows or not default or rows < LARGE * default:
        return None
    return (
        f"benchmark={bench.name}: each evaluation scores {rows} rows, {rows / default:.1f}x the default job's "
        f"{default}, and this job evaluates {evaluations} models: on this CPU expect its evaluations (and the "
        "reference models' fine-tuning, where they are not cached) to take about that many times as long as "
        "the default job's; benchmark.subset caps the rows"
    )
