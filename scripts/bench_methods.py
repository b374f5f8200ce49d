"""Alternating section of ``make bench`` (``--sections alternating``): the step of each method against GradDiff,
all in one process on one loaded model, one step of each in turn, round after round.

On a loaded host the child-per-method ``methods`` section measures each method under whatever load its minutes
had; here every round times every method within seconds of each other, so the ratio to GradDiff of the same
round cancels the load, and the median over rounds is printed. Peak memory is not measured here (one process
holds every method); the ``methods`` section has it.

    python scripts/bench.py --sections alternating --methods graddiff ceu satimp pdu dpo altpo --steps 5
"""

from __future__ import annotations

import statistics
from pathlib import Path

from scripts.bench_common import METHOD_OVERRIDES, compose_config, timed, unlearn_data


def alternating_section(args) -> None:
    import torch

    from runner.benchmarks.base import build_benchmark
    from runner.components import build
    from runner.data.qa import PromptFormat
    from runner.methods.base import Method
    from runner.models import load_model, set_trainable
    from runner.precision import resolve
    from runner.scoring import autocast
    from runner.training import backward_by_parts, collate_pairs

    methods = list(dict.fromkeys(["graddiff", *args.methods]))
    cfgs = {m: compose_config(f"method={m}", *METHOD_OVERRIDES.get(m, []), *args.overrides) for m in methods}
    cfg = cfgs["graddiff"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve(cfg.precision, device)["used"]
    torch.manual_seed(0)
    cache = Path(cfg.paths.cache_dir).resolve()
    model, tokenizer = load_model(cfg.model, cache)
    set_trainable(model, cfg.model.trainable_layers)
    model.to(device)
    fmt = PromptFormat.from_cfg(cfg.model.prompt)
    bench = build_benchmark(cfg.benchmark, tokenizer, fmt)
    data = unlearn_data(cfg, model, tokenizer, bench, args.batch, precision)
    batch = collate_pairs(tokenizer.pad_token_id)(
        [{"forget": f, "retain": r} for f, r in zip(data.forget, data.retain, strict=True)]
    )
    batch = {k: {n: t.to(device) for n, t in v.items()} for k, v in batch.items()}
    built = {}
    for m in methods:
        method = build(cfgs[m].method, Method, "method")
        method.prepare(data)
        built[m] = method
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-9, fused=True)  # a real optimizer step that barely moves the weights
    model.train()

    def step(method) -> float:
        def once():
            with autocast(precision, device):
                backward_by_parts(method.loss_parts)(model, batch, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        return timed(once, device)

    for method in built.values():  # warm-up
        for _ in range(args.warmup):
            step(method)
    times = {m: [] for m in methods}
    for _ in range(args.steps):
        for m in methods:
            times[m].append(step(built[m]))
    print(
        f"\nper-step cost, alternating in one process on {device.type} ({precision}), batch {args.batch} forget + "
        f"{args.batch} retain, {args.steps} rounds"
    )
    print("| method | median step (s) | step / GradDiff (median of per-round ratios) | min-max ratio |")
    print("|---|---|---|---|")
    for m in methods:
        ratios = [t / g for t, g in zip(times[m], times["graddiff"], strict=True)]
        print(
            f"| {m} | {statistics.median(times[m]):.3f} | {statistics.median(ratios):.2f} "
            f"| {min(ratios):.2f}-{max(ratios):.2f} |"
        )
