"""Evaluation section of scripts/bench.py: the default TOFU evaluation stage before and after the privacy family.

Before: each suite's shared-prompt scoring and greedy answers under the gold-derived caps
(``benchmark.max_new_tokens=auto``, the default until then), nothing else. After: the benchmark's
``evaluate`` as configured (default: answers up to 200 new tokens stopping at EOS, the forget pass
keeping token statistics, the holdout pass, GradNorm's backward passes, Gibberish). The two run
alternately on the same loaded model, ``--eval-rounds`` times each, so machine load hits both alike;
then one pass of each added part alone says where the time goes. Target: after / before <= 1.35.
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
    gold_caps = build_benchmark(gold_caps_cfg.benchmark, tokenizer, fmt).max_new_tokens
    bs, pad = cfg.eval.batch_size, tokenizer.pad_token_id

    def before() -> None:
        for suite in SUITES:
            prompts, answers = bench._scored[suite]
            score_answer_sets(model, prompts, answers, pad, bs, precision, f"before: score {suite}")
            greedy_generate(model, tokenizer, prompts, gold_caps[suite], bs, precision, f"before: generate {suite}")

    def after() -> None:
        bench.evaluate(model, cfg.eval, precision)

    def timed(fn, *fn_args) -> float:
        start = time.perf_counter()
        fn(*fn_args)
        return time.perf_counter() - start

    rounds = []
    for _ in range(args.eval_rounds):
        rounds.append((timed(before), timed(after)))

    # the added parts, one pass each
    parts = {}
    parts["answers: 200-token cap (all suites)"] = sum(
        timed(greedy_generate, model, tokenizer, bench._scored[s][0], bench.max_new_tokens[s], bs, precision, "200")
        for s in SUITES
    )
    parts["answers: gold-derived caps (all suites)"] = sum(
        timed(greedy_generate, model, tokenizer, bench._scored[s][0], gold_caps[s], bs, precision, "gold")
        for s in SUITES
    )
    prompts, answers = bench._scored["forget"]
    parts["forget scoring, plain"] = timed(score_answer_sets, model, prompts, answers, pad, bs, precision, "plain")
    parts["forget scoring + token statistics"] = timed(
        lambda: score_answer_sets(model, prompts, answers, pad, bs, precision, "stats", gold_stats=True)
    )
    held = bench._holdout_scored
    parts[f"holdout pass ({len(held)} rows)"] = timed(
        lambda: score_answer_sets(
            model, [p for p, _ in held], [[a] for _, a in held], pad, bs, precision, "holdout", gold_stats=True
        )
    )
    pairs = bench._gold_pairs() + held
    encoded = [{"input_ids": p + a, "labels": [IGNORE] * len(p) + a} for p, a in pairs]
    if bench.gradnorm:
        parts[f"GradNorm ({len(encoded)} backward passes)"] = timed(
            privacy.gradnorm_scores, model, encoded, bench.gradnorm, precision
        )

    print(f"\nTOFU evaluation stage of {cfg.model.name} on {device.type} ({precision}), eval batch {bs}")
    print("| round | before (s) | after (s) | after / before |")
    print("|---|---|---|---|")
    for i, (b, a) in enumerate(rounds, 1):
        print(f"| {i} | {b:.1f} | {a:.1f} | {a / b:.2f} |")
    total_b, total_a = sum(b for b, _ in rounds), sum(a for _, a in rounds)
    print("| part, one pass | seconds |\n|---|---|")
    for name, seconds in parts.items():
        print(f"| {name} | {seconds:.1f} |")
    ratio = total_a / total_b
    print(f"evaluation after / before: {ratio:.2f} (target <= {TARGET}) {'ok' if ratio <= TARGET else 'OVER'}")
