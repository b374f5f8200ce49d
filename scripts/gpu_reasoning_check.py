"""MATH-500 on a GPU: greedy decoding against CyclicReflex, on as many problems as fit in a time budget.

The issue's GPU number: DeepSeek-R1-Distill-Qwen-1.5B on MATH-500, greedy vs ``cyclicreflex``, accuracy
and mean response length (the CyclicReflex paper: 0.74 -> 0.77 over all 500 problems, with sampling).
The model is loaded once; problems go in chunks of ``--batch``, each chunk under every decoding in
turn, so whatever the budget allows, every decoding has answered the same problems. Stops starting
new chunks once ``--budget-s`` seconds have passed. Prints a table and writes ``reasoning_check.json``
(metrics per decoding and every answer) under ``--out``.

The weights come from the hub (network) or a local copy: ``model.id=/path/to/DeepSeek-R1-Distill-Qwen-1.5B``.
A sized run for a 15-minute device session (the model already on local disk):

    python scripts/gpu_reasoning_check.py --out "$OUT" --batch 64 --max-new-tokens 4096 --budget-s 480 \\
        model.id=/models/DeepSeek-R1-Distill-Qwen-1.5B

``--decodings`` picks the strategies (default: greedy and CyclicReflex on greedy decoding, so the wave
is the only difference; add ``sample cyclicreflex_sampled`` for the paper's sampled setting). Any other
arguments are Hydra overrides of the job config (``benchmark.max_new_tokens`` is set by the flag).
On a CPU, the same script runs end to end on the tiny model (a smoke test of the script itself):

    python scripts/gpu_reasoning_check.py --out /tmp/check --batch 2 --max-new-tokens 16 --problems 4 \\
        model=tiny precision=fp32 'benchmark.reflection_words=[a,e]'
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DECODINGS = {  # name -> overrides of the decoding group
    "greedy": ["decoding=greedy"],
    "cyclicreflex": ["decoding=cyclicreflex", "decoding.do_sample=false"],
    "sample": ["decoding=sample"],
    "cyclicreflex_sampled": ["decoding=cyclicreflex"],
    "tip": ["decoding=tip", "decoding.do_sample=false"],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for reasoning_check.json")
    ap.add_argument("--decodings", nargs="+", default=["greedy", "cyclicreflex"], choices=sorted(DECODINGS))
    ap.add_argument("--batch", type=int, default=64, help="problems per chunk (one generate batch)")
    ap.add_argument("--max-new-tokens", type=int, default=4096, help="the papers use 8192")
    ap.add_argument("--problems", type=int, default=500, help="at most this many MATH-500 problems")
    ap.add_argument("--budget-s", type=float, default=480.0, help="start no new chunk after this many seconds")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.id=/models/DeepSeek-R1-Distill-Qwen-1.5B")
    args = ap.parse_args(argv)

    import torch
    from hydra import compose, initialize_config_dir

    from runner.benchmarks.reasoning import ReasoningSuite
    from runner.data.qa import PromptFormat
    from runner.models import load_model

    base = [
        "method=none",
        "benchmark=math500",
        "model=deepseek-r1-distill-qwen-1.5b",
        f"benchmark.subset={args.problems}",
        f"benchmark.max_new_tokens={args.max_new_tokens}",
        "seed=42",  # CyclicReflex's seed (sampled decodings)
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfgs = {
            name: compose("config", overrides=[*base, *DECODINGS[name], *args.overrides]) for name in args.decodings
        }
    first = next(iter(cfgs.values()))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    model, tokenizer = load_model(first.model, Path(first.paths.cache_dir).resolve())
    model.to(device)
    loaded = time.perf_counter() - start
    from runner.precision import resolve

    precision = resolve(first.precision, device)["used"]  # auto -> bf16 on a GPU with native bfloat16
    fmt = PromptFormat.from_cfg(first.model.prompt)
    suites = {name: ReasoningSuite(cfg.benchmark, tokenizer, fmt) for name, cfg in cfgs.items()}
    total = len(next(iter(suites.values())).rows)
    print(
        f"{first.model.name} on {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), "
        f"loaded in {loaded:.0f}s; {total} problems available, chunks of {args.batch}",
        flush=True,
    )

    per = {name: {} for name in suites}  # name -> per-answer lists, concatenated over chunks
    seconds = dict.fromkeys(suites, 0.0)
    tokens = dict.fromkeys(suites, 0)
    done = 0
    while done < total and time.perf_counter() - start < args.budget_s:
        chunk = list(range(done, min(done + args.batch, total)))
        for name, suite in suites.items():
            t0 = time.perf_counter()
            agg, rows = suite.select(chunk).evaluate(model, args.batch, precision)
            seconds[name] += time.perf_counter() - t0
            tokens[name] += agg["generation"]["tokens"]
            for key, values in rows.items():
                if key == "problem":
                    values = [chunk[i] for i in values]
                per[name].setdefault(key, []).extend(values)
        done += len(chunk)
        line = ", ".join(f"{n} {statistics.fmean(p['correct']):.3f}" for n, p in per.items())
        print(f"[{time.perf_counter() - start:.0f}s] {done} problems: accuracy {line}", flush=True)

    results = {}
    for name, p in per.items():
        if not p:
            continue
        results[name] = {
            "problems": done,
            "accuracy": statistics.fmean(p["correct"]),
            "mean_length": statistics.fmean(p["length"]),
            "mean_thinking_length": statistics.fmean(p["thinking_length"]),
            "closed_thinking": statistics.fmean(p["closed_thinking"]),
            "reflections_per_response": statistics.fmean(sum(c.values()) for c in p["reflections"]),
            "tokens_per_s": tokens[name] / max(seconds[name], 1e-9),
            "decoding": {k: v for k, v in dict(cfgs[name].decoding).items() if k != "_target_"},
        }
    print(f"\nMATH-500, {first.model.name}, first {done} problems, max {args.max_new_tokens} new tokens")
    print("| decoding | accuracy | mean length | thinking | closed thinking | reflections / answer | tokens/s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['accuracy']:.3f} | {r['mean_length']:.0f} | {r['mean_thinking_length']:.0f} "
            f"| {r['closed_thinking']:.2f} | {r['reflections_per_response']:.2f} | {r['tokens_per_s']:.0f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "reasoning_check.json"
    out.write_text(
        json.dumps(
            {"results": results, "per_example": per, "settings": vars(args) | {"out": str(args.out)}}, default=str
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
