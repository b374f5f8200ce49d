"""Distillation section of ``make bench``: does EPiC's training time fall with its kept tokens?

The same traces (the shipped GSM8K training solutions), the same student (the default model), the
same seed, data order and steps: once on the full traces and once condensed by EPiC at ratio 0.5.
It prints the tokens trained and the training wall time of each, and the two ratios. The target is
a time ratio at most 10% above the token ratio: a fixed per-step cost would eat the saving.
``--sections distill``; ``--distill-traces`` sets how many traces, ``--distill-rounds`` how many
timed runs of each (the best counts, after one warm-up).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from scripts.bench_common import compose_config


def _setup(n_traces: int, overrides: list[str]):
    import torch

    from runner.data.qa import PromptFormat
    from runner.distill.job import ResponseEncoder
    from runner.distill.traces import load_traces
    from runner.models import load_model
    from runner.precision import resolve

    cfg = compose_config("task=distill", f"traces.subset={n_traces}", *overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg.precision = resolve(cfg.precision, device)["used"]
    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir).resolve())
    model.to(device)
    fmt = PromptFormat.from_cfg(cfg.model.prompt)
    encoder = ResponseEncoder(tokenizer, fmt, str(cfg.distill.instruction), cfg.distill, cfg.traces)
    return cfg, model, tokenizer, encoder, load_traces(cfg.traces)


def _train_once(cfg, model, tokenizer, examples, state) -> tuple[float, int]:
    """Seconds of one training run from ``state``, and the tokens its batches held, padding included."""
    from runner.models import load_state, set_trainable
    from runner.scoring import mean_nll
    from runner.training import ListDataset, collate_single, train

    load_state(model, state)  # every run starts from the same weights
    set_trainable(model, cfg.model.trainable_layers)
    collate, padded = collate_single(tokenizer.pad_token_id), [0]

    def counting(batch):
        out = collate(batch)
        padded[0] += out["input_ids"].numel()
        return out

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        train(
            model,
            ListDataset(examples),
            counting,
            lambda m, batch: (mean_nll(m, batch), {}),
            cfg.distill.train,
            seed=cfg.seed,
            precision=cfg.precision,
            output_dir=Path(out),
            stage="bench distill",
        )
        return time.perf_counter() - start, padded[0]


def distill_section(args) -> None:
    from runner.distill.condense import FullTrace, HeadAndTail
    from runner.distill.job import prepare_examples
    from runner.models import set_trainable, trainable_state

    cfg, model, tokenizer, encoder, traces = _setup(args.distill_traces, args.overrides)
    set_trainable(model, cfg.model.trainable_layers)
    state = trainable_state(model)
    rows, examples = {}, {}
    for name, rule in (("none", FullTrace()), ("epic 0.5", HeadAndTail(ratio=0.5))):
        encoded, _ = prepare_examples(traces, encoder, rule, int(cfg.distill.max_length))
        examples[name] = [e.example for e in encoded]
        tokens = sum(len(e["input_ids"]) for e in examples[name])
        response = sum(e.response_tokens for e in encoded)
        rows[name] = {"examples": len(encoded), "tokens": tokens, "response": response, "seconds": float("inf")}
        rows[name]["padded"] = 0
    # alternating rounds, so that a change in the machine's load hits both alike; round 0 warms up
    for round_ in range(1 + args.distill_rounds):
        for name in rows:
            seconds, padded = _train_once(cfg, model, tokenizer, examples[name], state)
            rows[name]["padded"] = padded  # the same every round: the sampler is seeded
            if round_:
                rows[name]["seconds"] = min(rows[name]["seconds"], seconds)
    none, epic = rows["none"], rows["epic 0.5"]
    train = cfg.distill.train
    print(
        f"\n## Distillation: training cost against kept tokens ({cfg.model.name}, {cfg.precision}, "
        f"{none['examples']} GSM8K traces, {train.epochs} epochs of batch {train.batch_size}, best of "
        f"{args.distill_rounds})\n"
    )
    print(
        "| condensation | examples | tokens / epoch | response tokens / epoch | tokens with padding | train time (s) |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['examples']} | {r['tokens']} | {r['response']} | {r['padded']} | {r['seconds']:.2f} |")
    token_ratio, time_ratio = epic["tokens"] / none["tokens"], epic["seconds"] / none["seconds"]
    padded_ratio = epic["padded"] / none["padded"]
    # a fixed cost per step would keep the time ratio above the token ratio; below it is fine (shorter
    # sequences also pad less and attend over fewer positions)
    verdict = "ok" if time_ratio <= 1.10 * token_ratio else "OVER"
    print(
        f"\nepic / none: tokens {token_ratio:.3f}, tokens with padding {padded_ratio:.3f}, time {time_ratio:.3f} "
        f"(target: time <= 1.10 x tokens = {1.10 * token_ratio:.3f}) {verdict}; time against the padded "
        f"tokens the batches held: {abs(time_ratio / padded_ratio - 1):.1%} apart"
    )
