"""Answers section of scripts/bench.py (``--sections answers``): the default TOFU evaluation's greedy answers and a
``--gsm8k-problems`` GSM8K evaluation at ``--gen-tokens`` tokens, before (the eager loop, ``generation.compile=false``,
and ``model.generate`` for the answers) and after (the default ``generation.compile=auto``, and compiled).

Wall time of the whole generating call, compile included, taking turns; the answers must be the same.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from scripts.bench_common import compose_config


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def answers(args) -> None:
    import torch

    from runner.benchmarks.base import build_benchmark
    from runner.benchmarks.reasoning import ReasoningSuite
    from runner.data.qa import PromptFormat, left_padded
    from runner.decoding import engine
    from runner.decoding.generate import greedy_ids
    from runner.models import load_model
    from runner.precision import resolve

    cfg = compose_config(*args.overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve(cfg.precision, device)["used"]
    cache = Path(cfg.paths.cache_dir).resolve()
    model, tokenizer = load_model(cfg.model, cache)
    model.to(device).eval()
    fmt = PromptFormat.from_cfg(cfg.model.prompt)
    bench = build_benchmark(cfg.benchmark, tokenizer, fmt)
    eos, pad, size = tokenizer.eos_token_id, tokenizer.pad_token_id, int(cfg.eval.batch_size)
    suites = [s for s in ("forget", "retain") if s in bench.max_new_tokens]

    def plain(prompts, cap) -> list[list[int]]:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list = [None] * len(prompts)
        for first in range(0, len(order), size):
            idx = order[first : first + size]
            ids, mask = left_padded([prompts[i] for i in idx], pad, device)
            with torch.inference_mode():
                new = model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=cap, do_sample=False, pad_token_id=pad,
                    eos_token_id=eos,
                )[:, ids.shape[1] :].tolist()  # fmt: skip
            for i, row in zip(idx, new, strict=True):
                out[i] = row[: row.index(eos)] if eos in row else row
        return out

    def runner(compile):
        def run(prompts, cap, desc):
            engine.configure({"compile": compile}, cache)
            return greedy_ids(model, tokenizer, prompts, cap, size, precision, desc)

        return run

    systems = {"model.generate": lambda p, c, d: plain(p, c), "eager loop (before)": runner(False)}
    systems |= {"compile=auto (after)": runner("auto")} | ({"compile=true": runner(True)} if args.tofu_compiled else {})
    seconds, outs = dict.fromkeys(systems, 0.0), {}
    for suite in suites:
        prompts, cap = bench._scored[suite][0], int(bench.max_new_tokens[suite])
        for name, run in systems.items():  # taking turns
            outs[name], s = _timed(lambda run=run, p=prompts, c=cap, s=suite: run(p, c, f"answers {s}"))
            seconds[name] += s
        print(f"answers {suite}: {len(prompts)} prompts, cap {cap}", file=sys.stderr, flush=True)
        same = len({str(o) for o in outs.values()}) == 1
        print(f"TOFU {suite}: answers the same in every system: {'yes' if same else 'NO'}")
    base = seconds["model.generate"]
    print(f"\nTOFU greedy answers ({', '.join(suites)}; {cfg.model.name}, batch {size}, {precision}), wall time:")
    for name, s in seconds.items():
        print(f"  {name}: {s:.1f} s ({base / s:.2f}x model.generate)")

    gcfg = compose_config("method=none", "benchmark=gsm8k", f"benchmark.subset={args.gsm8k_problems}")
    gcfg.benchmark.max_new_tokens = args.gen_tokens
    suite = ReasoningSuite(gcfg.benchmark, tokenizer, fmt)
    walls = {}
    for name, compile in (("eager loop (before)", False), ("compile=auto (after)", "auto"), ("compile=true", True)):
        engine.configure({"compile": compile}, cache)
        (metrics, _), walls[name] = _timed(lambda: suite.evaluate(model, size, precision))
        print(f"GSM8K {name}: accuracy {metrics.get('accuracy')}", file=sys.stderr, flush=True)
    before = walls["eager loop (before)"]
    print(f"\nGSM8K, {args.gsm8k_problems} problems, {args.gen_tokens} tokens, greedy, batch {size}, wall time:")
    for name, s in walls.items():
        print(f"  {name}: {s:.1f} s ({before / s:.2f}x before)")
    calls = engine.summary()["calls"]
    print("compile decisions of the last run: " + "; ".join(f"{c['desc']}: {c['why']}" for c in calls))
