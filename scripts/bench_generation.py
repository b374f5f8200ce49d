"""Generation section of scripts/bench.py (``--sections gen``): the compiled static-cache loop against
``model.generate`` and the eager loop, greedy and CyclicReflex, at each ``--gen-batches`` size and
``--gen-tokens`` new tokens (EOS ignored, so every system generates the same count); then the peak memory
of the static cache against the dynamic one, each in its own process.

The compile is timed on its own (the first call of a shape; a warm inductor disk cache makes it short),
and the break-even token count is ``compile seconds / (seconds per token eager - compiled)``. Systems take
turns round by round, so load from other jobs falls on all of them; the best round of each counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run on its own as the memory check's child process
    sys.path.insert(0, str(ROOT))

from scripts.bench_common import PeakRSS, compose_config  # noqa: E402

PEAK_TARGET = 1.2  # static cache peak / dynamic cache peak


def _setup(args, batch: int):
    import torch

    from runner.benchmarks.reasoning import ReasoningSuite
    from runner.data.qa import PromptFormat
    from runner.decoding import engine
    from runner.models import load_model
    from runner.precision import resolve

    cfg = compose_config("method=none", "benchmark=gsm8k", *args.overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg.precision = resolve(cfg.precision, device)["used"]
    engine.configure(cfg.generation, Path(cfg.paths.cache_dir).resolve())
    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir).resolve())
    model.to(device).eval()
    fmt = PromptFormat.from_cfg(cfg.model.prompt)
    suite = ReasoningSuite(cfg.benchmark, tokenizer, fmt)
    prompts = [suite.prompts[i % len(suite.prompts)] for i in range(batch)]
    return cfg, model, tokenizer, fmt, prompts, device


def _runner(model, tokenizer, fmt, prompts, strategy, tokens, precision, compile):
    from runner.decoding import engine
    from runner.decoding.base import DecodingContext
    from runner.decoding.generate import generate

    engine.configure({"compile": compile}, None)
    run = generate(
        model, tokenizer, prompts, strategy, DecodingContext(tokenizer, fmt.think_end), tokens, len(prompts),
        precision, "bench", eos_ids=set(),
    )  # fmt: skip
    return [s[0].ids for s in run.outputs]


def _plain(model, tokenizer, fmt, prompts, strategy, tokens, precision, device):
    import torch

    from runner.data.qa import left_padded
    from runner.decoding.base import DecodingContext
    from runner.scoring import autocast

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # the runner's batch order
    ids, mask = left_padded([prompts[i] for i in order], tokenizer.pad_token_id, device)
    with torch.inference_mode(), autocast(precision, device):
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            pad_token_id=tokenizer.pad_token_id,
            logits_processor=strategy.processors(DecodingContext(tokenizer, fmt.think_end)),
            **strategy.generate_kwargs(),
        )
    rows = out[:, ids.shape[1] :].tolist()
    back = [None] * len(prompts)
    for k, i in enumerate(order):
        back[i] = rows[k]
    return back


def speed(args) -> None:
    import torch

    from runner.decoding.static_step import decoder_for
    from runner.decoding.strategies import CyclicReflex, Decoding

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    tokens = args.gen_tokens
    print(f"\nGeneration: compiled static-cache loop vs model.generate, {tokens} new tokens (EOS ignored)")
    print(
        "| batch | decoding | model.generate tok/s | eager loop tok/s | compiled tok/s | compiled / generate | same tokens |"
    )
    print("|---|---|---|---|---|---|---|")
    notes = []
    for batch in args.gen_batches:
        cfg, model, tokenizer, fmt, prompts, device = _setup(args, batch)
        strategies = {
            "greedy": Decoding(name="greedy"),
            # the benchmark's reflection words (the tiny tokenizer holds none of the paper's as one token)
            "CyclicReflex": CyclicReflex(
                amplitude=5.0, period=64, do_sample=False, words=list(cfg.benchmark.reflection_words)
            ),
        }
        decoder = decoder_for(model, True)
        start = time.perf_counter()
        _runner(model, tokenizer, fmt, prompts, strategies["greedy"], 2, cfg.precision, True)  # compiles the shape
        compile_s, first_call = decoder.compile_seconds, time.perf_counter() - start
        for name, strategy in strategies.items():
            common = (model, tokenizer, fmt, prompts, strategy, tokens, cfg.precision)
            systems = {
                "generate": partial(_plain, *common, device),
                "eager": partial(_runner, *common, False),
                "compiled": partial(_runner, *common, True),
            }
            best, outs = dict.fromkeys(systems, 0.0), {}
            for _ in range(args.gen_rounds):  # taking turns
                for key, run in systems.items():
                    sync()
                    start = time.perf_counter()
                    outs[key] = run()
                    sync()
                    best[key] = max(best[key], batch * tokens / (time.perf_counter() - start))
            same = outs["generate"] == outs["eager"] == outs["compiled"]
            ratio = best["compiled"] / best["generate"]
            print(
                f"| {batch} | {name} | {best['generate']:.1f} | {best['eager']:.1f} | {best['compiled']:.1f} "
                f"| {ratio:.2f} | {'yes' if same else 'NO'} |",
                flush=True,
            )
            saved = 1 / best["generate"] - 1 / best["compiled"]
            even = f"{compile_s / saved:.0f} tokens" if saved > 0 else "never (compiled is not faster)"
            notes.append(
                f"batch {batch} {name}: compile {compile_s:.1f} s (first call {first_call:.1f} s), break-even {even}"
            )
        del model
    print("\n" + "\n".join(notes))
    print(f"target: compiled / generate >= 1.5 with the same greedy tokens (device {device.type})")
    threads_case(args)
    memory(args)


def threads_case(args) -> None:
    """The eager loop at ``threads=auto``'s choice and at one thread, taking turns: on a machine that other jobs
    load, torch's spinning OpenMP threads make more threads slower (os.getloadavg() is printed with it)."""
    import torch

    from runner import threads
    from runner.decoding.strategies import Decoding

    auto, why = threads.choose("auto")
    cfg, model, tokenizer, fmt, prompts, device = _setup(args, args.gen_batches[0])
    tokens, best = min(args.gen_tokens, 64), {}
    for _ in range(args.gen_rounds):
        for n in dict.fromkeys([auto, 1]):
            torch.set_num_threads(n)
            start = time.perf_counter()
            _runner(model, tokenizer, fmt, prompts, Decoding(name="greedy"), tokens, cfg.precision, False)
            best[n] = max(best.get(n, 0.0), len(prompts) * tokens / (time.perf_counter() - start))
    torch.set_num_threads(auto)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    rates = ", ".join(f"{n} thread(s) {r:.1f} tok/s" for n, r in best.items())
    print(f"\nthreads ({why}; load average {load}), eager loop, batch {len(prompts)}, {tokens} tokens: {rates}")


def _peak_rss_child(args, kind: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, __file__, "--memory", kind, str(args.gen_batches[-1]), str(args.gen_tokens), *args.overrides]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def memory(args) -> None:
    static, dynamic = _peak_rss_child(args, "static"), _peak_rss_child(args, "dynamic")
    ratio = static["peak_mb"] / max(dynamic["peak_mb"], 1e-9)
    verdict = "ok" if ratio <= PEAK_TARGET else "OVER"
    print(
        f"\npeak memory above the loaded model, batch {args.gen_batches[-1]}, {args.gen_tokens} tokens: static cache "
        f"{static['peak_mb']:.0f} MiB, dynamic {dynamic['peak_mb']:.0f} MiB, static / dynamic {ratio:.2f} "
        f"(target <= {PEAK_TARGET}) {verdict}; the caches alone: static {static['cache_mb']:.0f} MiB "
        f"({static['cache_len']} positions), dynamic {dynamic['cache_mb']:.0f} MiB ({dynamic['cache_len']}) at the end"
    )


def _measure_memory(kind: str, batch: int, tokens: int, overrides: list[str]) -> dict:
    """One eager greedy batch on the static or the dynamic cache; peak RSS (CPU) or CUDA allocation above the loaded
    model, after one short pass (so that paging the weights in, the same for both, is not counted)."""
    import gc

    import torch

    from runner.decoding.loop import argmax, decode_batch
    from runner.decoding.progress import TokenBar
    from runner.decoding.static_step import cache_length

    args = type("A", (), {"overrides": overrides})
    cfg, model, tokenizer, fmt, prompts, device = _setup(args, batch)
    with torch.inference_mode():  # the first pass pages the weights in (about 400 MiB here): not the cache's cost
        model(input_ids=torch.tensor([prompts[0][:4]], device=device), use_cache=False)
    gc.collect()
    sampler = PeakRSS()
    base = sampler.peak
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    sampler.start()
    bar = TokenBar(batch, tokens, kind)
    with torch.inference_mode():
        decode_batch(
            model, prompts, tokenizer.pad_token_id, tokens, argmax, set(), static=kind == "static", compile=False,
            leave=True, bar=bar, precision=cfg.precision,
        )  # fmt: skip
    peak = sampler.stop()
    bar.close()
    top = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak
    # the keys and values alone: layers x 2 x rows x kv heads x length x head dim x bytes, at the end of the batch
    c = model.config
    prompt = max(map(len, prompts))
    length = cache_length(prompt, tokens) if kind == "static" else prompt + tokens
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    size = next(model.parameters()).element_size()
    cache = c.num_hidden_layers * 2 * batch * c.num_key_value_heads * length * head_dim * size / 2**20
    return {"kind": kind, "peak_mb": top - base, "cache_mb": cache, "cache_len": length}


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--memory":
        print(json.dumps(_measure_memory(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])))
