"""R²MU section of ``make bench``: what do R²MU's two extra terms cost per step, against plain RMU?

The default model (or any ``model=`` override), the WMDP fixtures (tests/fixtures) as forget and
retain text, R²MU's defaults (layer 7, down-projections of layers 5-7) for both methods. R²MU's traces
are generated once, ``train_tokens`` long (what a step reads: the cue and the first 100 tokens), into
the configured cache, so a second run generates nothing. Each method is prepared as a job prepares it
(activation caches included) and timed on the same forget + retain batch, R²MU with a trace and a
chain-of-thought batch of the same size: forward, backward and AdamW, a few warm-up steps, then the
median of timed steps, the two methods taking turns. Target: R²MU's step at most 2.2x RMU's. ``--sections r2mu``.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from scripts.bench_common import ROOT, compose_config, timed, unlearn_data

TARGET = 2.2
FIXTURES = [
    "benchmark=wmdp",
    f"benchmark.source={ROOT / 'tests' / 'fixtures' / 'hub'}",
    f"benchmark.bio_forget_corpus={ROOT / 'tests' / 'fixtures' / 'bio_forget_corpus.jsonl'}",
    "benchmark.questions=[bio]",
]


def _timed_steps(methods: dict, model, batches: dict, steps: int, warmup: int, precision: str, device) -> dict:
    """Median seconds of a step (forward, backward, AdamW) per method; the methods take turns step by step, so
    a load change on a shared machine hits both alike."""
    import torch

    from runner.scoring import autocast
    from runner.training import backward_by_parts

    params = [p for p in model.parameters() if p.requires_grad]  # the same set for both (select_trainable)
    opts = {name: torch.optim.AdamW(params, lr=1e-6) for name in methods}
    times: dict[str, list[float]] = {name: [] for name in methods}
    model.train()
    for i in range(warmup + steps):
        for name, method in methods.items():

            def step(name=name, method=method):
                with autocast(precision, device):  # as the one-process trainer steps: each loss part alone
                    backward_by_parts(method.loss_parts)(model, batches[name], 1.0)
                opts[name].step()
                opts[name].zero_grad(set_to_none=True)

            seconds = timed(step, device)
            if i >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items()}


def r2mu_section(args) -> None:
    import torch

    from runner.benchmarks.base import build_benchmark
    from runner.components import build
    from runner.data.qa import PromptFormat, collate_qa
    from runner.methods.base import Method
    from runner.models import load_model
    from runner.precision import resolve

    n = args.batch
    r2mu_cfg = compose_config("method=r2mu", *FIXTURES, "method.traces.new_tokens=100", *args.overrides)
    rmu_cfg = compose_config("method=rmu", *FIXTURES, *args.overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve(r2mu_cfg.precision, device)["used"]
    cache = Path(str(r2mu_cfg.paths.cache_dir)).resolve()
    model, tokenizer = load_model(r2mu_cfg.model, cache)
    model.to(device)
    fmt = PromptFormat.from_cfg(r2mu_cfg.model.prompt)
    bench = build_benchmark(r2mu_cfg.benchmark, tokenizer, fmt)
    data = unlearn_data(r2mu_cfg, model, tokenizer, bench, n, precision)
    methods = {"rmu": build(rmu_cfg.method, Method, "method"), "r2mu": build(r2mu_cfg.method, Method, "method")}
    for method in methods.values():  # each as a job prepares it: its trainable set, then its caches
        method.select_trainable(model)
        method.prepare(data)
    r2mu = methods["r2mu"]

    def part(examples):
        rows = [examples[i % len(examples)] for i in range(n)]
        return {k: v.to(device) for k, v in collate_qa(rows, tokenizer.pad_token_id).items()}

    batch = {
        "forget": part(data.forget),
        "retain": part(data.retain),
        "trace": part(r2mu.trace_train),
        "cot": part(r2mu.cot),
    }
    batches = {"rmu": {k: batch[k] for k in ("forget", "retain")}, "r2mu": batch}
    seconds = _timed_steps(methods, model, batches, args.steps, args.warmup, precision, device)
    tokens = {name: int(b["attention_mask"].sum()) for name, b in batch.items()}
    print(
        f"\nR²MU vs RMU on {device.type} ({precision}), {r2mu_cfg.model.name}, layer {r2mu.layer}, "
        f"{n} sequences per part (real tokens: {tokens}), median of {args.steps} steps after {args.warmup}"
    )
    print("| method | step (s) | parts read |")
    print("|---|---|---|")
    print(f"| rmu | {seconds['rmu']:.4f} | forget, retain |")
    print(f"| r2mu | {seconds['r2mu']:.4f} | forget, retain, trace, cot |")
    ratio = seconds["r2mu"] / max(seconds["rmu"], 1e-12)
    print(f"r2mu / rmu step_s: {ratio:.2f} (target <= {TARGET}) {'ok' if ratio <= TARGET else 'OVER'}")
