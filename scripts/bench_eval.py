"""Evaluation section of scripts/bench.py: what issue 25's privacy family and 200-token answers cost the
default TOFU evaluation stage.

Three arms on the same rows, the same loaded model, in one process, alternating ``--eval-rounds``
times so machine load hits all alike:

- (a) before: each suite's shared-prompt scoring and greedy answers under the gold-derived caps
  (``benchmark.max_new_tokens=auto``, the default until then), nothing else;
- (b) the family on, same caps: the benchmark's ``evaluate`` with ``max_new_tokens=auto`` (the forget
  pass keeping token statistics, the holdout pass, GradNorm, Gibberish where its classifier is
  cached). b / a is what the 1.35x target is about;
- (c) the default: ``evaluate`` as configured (answers up to 200 new tokens, stopping at EOS). c / b
  is the cost of open-unlearning's generation setting alone, with the answer tokens each generated.

``--eval-arms a b`` leaves out (c), whose 200-token answers dominate a loaded CPU's run. Then one
pass of each added part alone says where the family's time goes.
"""

from __future__ import annotations

import time
from pathlib import Path

from scripts.bench_common import compose_config

TARGET = 1.35


def eval_section(args) -> None:
    import torch

    from runner.benchmarks import privacy
    from runner.benchmarks.base import build_benchmark
    from runner.benchmarks.tofu import SUITES
    from runner.data.qa import IGNORE, PromptFormat
    from runner.decoding.generate import greedy_generate
    from runner.models import load_model
    from runner.precision import resolve
    from runner.scoring import score_answer_sets

    cfg = compose_config(*args.overrides)
    gold_caps_cfg = compose_config(*args.overrides, "benchmark.max_new_tokens=auto")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve(cfg.precision, device)["used"]
    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir).resolve())
    model.to(device)
    fmt = PromptFormat.from_cfg(cfg.model.prompt)
    bench = build_benchmark(cfg.benchmark, tokenizer, fmt)
    gold_bench = build_benchmark(gold_caps_cfg.benchmark, tokenizer, fmt)
    bs, pad = cfg.eval.batch_size, tokenizer.pad_token_id

    def tokens(texts: list[str]) -> int:
        return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)

    def before() -> int:
        generated = 0
        for suite in SUITES:
            prompts, answers = bench._scored[suite]
            score_answer_sets(model, prompts, answers, pad, bs, precision, f"(a) score {suite}")
            cap = gold_bench.max_new_tokens[suite]
            generated += tokens(greedy_generate(model, tokenizer, prompts, cap, bs, precision, f"(a) generate {suite}"))
        return generated

    def evaluate(b) -> int:
        result = b.evaluate(model, cfg.eval, precision)
        return sum(tokens(result["per_example"][s]["generation"]) for s in SUITES)

    # warm-up (kernels, first allocations) so it is not charged to whichever arm runs first
    prompts, answers = bench._scored["forget"]
    score_answer_sets(model, prompts[:1], answers[:1], pad, bs, precision, "warm-up")
    greedy_generate(model, tokenizer, prompts[:1], 4, bs, precision, "warm-up")

    arms = {"a": before, "b": lambda: evaluate(gold_bench), "c": lambda: evaluate(bench)}
    arms = {k: v for k, v in arms.items() if k in args.eval_arms}
    seconds = {k: [] for k in arms}
    generated = {}
    for _ in range(args.eval_rounds):
        for name, run in arms.items():
            start = time.perf_counter()
            generated[name] = run()
            seconds[name].append(time.perf_counter() - start)

    # the family's added parts, one pass each
    parts = {}

    def timed(name: str, fn) -> None:
        start = time.perf_counter()
        fn()
        parts[name] = time.perf_counter() - start

    timed("forget scoring, plain", lambda: score_answer_sets(model, prompts, answers, pad, bs, precision, "plain"))
    timed(
        "forget scoring + token statistics",
        lambda: score_answer_sets(model, prompts, answers, pad, bs, precision, "stats", gold_stats=True),
    )
    held = bench._holdout_scored
    timed(
        f"holdout pass ({len(held)} rows)",
        lambda: score_answer_sets(
            model, [p for p, _ in held], [[a] for _, a in held], pad, bs, precision, "holdout", gold_stats=True
        ),
    )
    encoded = [{"input_ids": p + a, "labels": [IGNORE] * len(p) + a} for p, a in bench._gold_pairs() + held]
    rows = int(cfg.benchmark.mia.gradnorm_batch)
    if bench.gradnorm:
        timed(
            f"GradNorm ({len(encoded)} rows, {rows} per call)",
            lambda: privacy.gradnorm_scores(model, encoded, bench.gradnorm, precision, rows),
        )

    print(f"\nTOFU evaluation stage of {cfg.model.name} on {device.type} ({precision}), eval batch {bs}")
    heads = {"a": "(a) before, gold caps", "b": "(b) family on, gold caps", "c": "(c) default: family, 200 tokens"}
    print("| round | " + " | ".join(f"{heads[k]} (s)" for k in arms) + " |")
    print("|---" * (1 + len(arms)) + "|")
    for i, row in enumerate(zip(*seconds.values(), strict=True), 1):
        print(f"| {i} | " + " | ".join(f"{s:.1f}" for s in row) + " |")
    total = {k: sum(v) for k, v in seconds.items()}
    print("answer tokens generated: " + ", ".join(f"({k}) {n}" for k, n in generated.items()))
    print("| part, one pass | seconds |\n|---|---|")
    for name, s in parts.items():
        print(f"| {name} | {s:.1f} |")
    if {"a", "b"} <= total.keys():
        ratio = total["b"] / total["a"]
        print(f"family on / before (b / a): {ratio:.2f} (target <= {TARGET}) {'ok' if ratio <= TARGET else 'OVER'}")
    if {"b", "c"} <= total.keys():
        print(f"200-token answers / gold caps, family on (c / b): {total['c'] / total['b']:.2f}")
    if {"a", "c"} <= total.keys():
        print(f"default now / before (c / a): {total['c'] / total['a']:.2f}")
