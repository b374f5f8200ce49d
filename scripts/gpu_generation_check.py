"""One short check of generation on a GPU session (a few minutes on one H100), printing a small table.

1. The compiled static-cache loop against ``model.generate`` and the eager loop on the default model,
   batch 8 and 32, 256 new tokens (EOS ignored), greedy: tokens/s, compile seconds, same tokens.
2. Where vLLM is installed: ``generation.backend=vllm`` on 16 shipped GSM8K problems, greedy and CyclicReflex,
   against the HF loop: tokens/s and how many problems give the same greedy tokens (kernels differ, so a few
   long generations may part late; the report says how many).

    RUNNER_CACHE=/path/to/cache python scripts/gpu_generation_check.py [--tokens 256] [hydra overrides]
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    from runner.decoding import engine
    from runner.decoding.base import DecodingContext
    from runner.decoding.generate import generate
    from runner.decoding.static_step import decoder_for
    from runner.decoding.strategies import CyclicReflex, Decoding
    from runner.decoding.vllm_backend import unavailable_reason
    from scripts.bench_generation import _plain, _runner, _setup

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this check is for a GPU session")
    greedy = Decoding(name="greedy")
    print(f"device {torch.cuda.get_device_name()}, {args.tokens} new tokens")
    print("| batch | generate tok/s | eager tok/s | compiled tok/s | compiled / generate | compile s | same |")
    print("|---|---|---|---|---|---|---|")
    for batch in (8, 32):
        cfg, model, tok, fmt, prompts, device = _setup(args, batch)
        common = (model, tok, fmt, prompts, greedy, args.tokens, cfg.precision)
        _runner(*common[:5], 2, cfg.precision, True)  # compile the shape
        compile_s = decoder_for(model, True).compile_seconds
        rates, outs = {}, {}
        for name, run in (
            ("generate", partial(_plain, *common, device)),
            ("eager", partial(_runner, *common, False)),
            ("compiled", partial(_runner, *common, True)),
        ):
            run()  # warm-up
            torch.cuda.synchronize()
            start = time.perf_counter()
            outs[name] = run()
            torch.cuda.synchronize()
            rates[name] = batch * args.tokens / (time.perf_counter() - start)
        same = outs["generate"] == outs["eager"] == outs["compiled"]
        print(
            f"| {batch} | {rates['generate']:.0f} | {rates['eager']:.0f} | {rates['compiled']:.0f} "
            f"| {rates['compiled'] / rates['generate']:.2f} | {compile_s:.1f} | {same} |",
            flush=True,
        )
    why = unavailable_reason()
    if why:
        print(f"vLLM: skipped ({why})")
        return
    cfg, model, tok, fmt, prompts, device = _setup(args, 16)
    ctx = DecodingContext(tok, fmt.think_end)
    for strategy in (greedy, CyclicReflex(amplitude=5.0, period=64, do_sample=False)):
        runs = {}
        for backend in ("hf", "vllm"):
            engine.configure({"compile": "auto", "backend": backend}, None)
            start = time.perf_counter()
            run = generate(model, tok, prompts, strategy, ctx, args.tokens, 16, cfg.precision, "check", vllm_ok=True)
            runs[backend] = (run, time.perf_counter() - start)
        hf, vl = runs["hf"][0], runs["vllm"][0]
        same = sum(a[0].ids == b[0].ids for a, b in zip(hf.outputs, vl.outputs, strict=True))
        print(
            f"vLLM {strategy.name}: {vl.tokens / runs['vllm'][1]:.0f} tok/s (HF loop {hf.tokens / runs['hf'][1]:.0f}), "
            f"same greedy tokens on {same} of {len(prompts)} problems (first call includes vLLM's start-up)"
        )


if __name__ == "__main__":
    main()
