"""GCG section of scripts/bench.py: seconds per GCG step and peak memory on the default model, against one
forward + backward of a candidate batch (the same sequences, parameter gradients of the trainable layers, as
training computes them).

A GCG step (runner.robustness.gcg_step) is one forward + backward of the question for the one-hot gradient,
then ``ceil(search_width / batch_size)`` forward passes over candidate batches without gradients. Each side runs in
its own process so the peak (resident-set growth over the loaded model on CPU, ``max_memory_allocated`` on GPU)
is its own. Targets: peak <= 1.5x the forward + backward's (GCG keeps one copy of the model and no parameter
gradients), and seconds per step / candidate batches <= 1.5x one forward + backward.

    python scripts/bench.py --sections gcg [--gcg-width 64] [--gcg-batch 32] [--gcg-steps 3] [hydra overrides]
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run on its own as the section's child process

from scripts.bench_common import ROOT, PeakRSS, compose_config, rss_mb  # noqa: E402


def _setup(overrides: list[str]):
    import torch

    from runner.benchmarks.base import build_benchmark
    from runner.data.qa import PromptFormat
    from runner.models import load_model, set_trainable
    from runner.precision import resolve

    cfg = compose_config(*overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg.precision = resolve(cfg.precision, device)["used"]
    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir).resolve())
    set_trainable(model, cfg.model.trainable_layers)
    bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
    return cfg, model.to(device), tokenizer, bench, device


def child(kind: str, width: int, batch: int, steps: int, overrides: list[str]) -> dict:
    import torch
    import torch.nn.functional as F

    from runner.robustness import ProbeContext
    from runner.robustness.gcg import GcgAttack
    from runner.robustness.gcg_step import candidate_losses, optimise
    from runner.scoring import autocast

    cfg, model, tokenizer, bench, device = _setup(overrides)
    attack = GcgAttack(steps=[steps], search_width=width, top_k=64, batch_size=batch, questions=1, filter_ids=False)
    ctx = ProbeContext(
        model, tokenizer, bench.fmt, bench.forget_rows, cfg.precision, batch, 0, 64, cfg.benchmark.max_length
    )
    row = attack.gcg_rows(ctx, bench.forget_rows[:1])[0]
    init = tokenizer(attack.init, add_special_tokens=False)["input_ids"][:1] * attack.suffix_length
    suffixes = torch.tensor([init] * batch, device=device)
    candidate_losses(model, row, suffixes[:1], 1, cfg.precision)  # warm-up outside the measurement
    before, sampler = rss_mb(), PeakRSS()
    sampler.start()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    if kind == "gcg":
        seconds = optimise(ctx, [row], init, attack, [steps]).seconds_per_step
    else:  # one forward + backward of the candidate batch, parameter gradients as in training
        model.train()
        ids = torch.cat([torch.tensor(row.before, device=device).expand(batch, -1), suffixes,
                         torch.tensor(row.after + row.target, device=device).expand(batch, -1)], dim=1)  # fmt: skip
        with autocast(cfg.precision, device):
            logits = model(input_ids=ids).logits
        F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten()).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    sampler.stop()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else sampler.peak - before
    return {
        "kind": kind,
        "seconds": seconds,
        "peak_mb": peak,
        "tokens": len(row.before) + len(init) + len(row.after) + len(row.target),
    }


def gcg_section(args) -> None:
    width, batch, steps = args.gcg_width, args.gcg_batch, args.gcg_steps
    print(f"\n== GCG step vs one forward+backward of a {batch}-candidate batch (default model) ==")
    results = {}
    for kind in ("fwdbwd", "gcg"):
        cmd = [sys.executable, __file__, kind, str(width), str(batch), str(steps), *args.overrides]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    gcg, ref = results["gcg"], results["fwdbwd"]
    batches = math.ceil(width / batch)
    per_batch = gcg["seconds"] / batches
    print(f"sequence: {gcg['tokens']} tokens; search width {width} = {batches} candidate batches of {batch}")
    print(f"{'':28}{'seconds':>10}{'peak MiB':>10}")
    print(f"{'forward+backward, 1 batch':28}{ref['seconds']:>10.3f}{ref['peak_mb']:>10.1f}")
    print(f"{'GCG step':28}{gcg['seconds']:>10.3f}{gcg['peak_mb']:>10.1f}")
    print(f"{'GCG step per batch':28}{per_batch:>10.3f}")
    for name, ratio in (
        ("time per candidate batch", per_batch / ref["seconds"]),
        ("peak", gcg["peak_mb"] / max(ref["peak_mb"], 1e-9)),
    ):
        print(f"GCG / forward+backward {name}: {ratio:.2f} (target <= 1.5) {'ok' if ratio <= 1.5 else 'OVER'}")


if __name__ == "__main__":
    kind, width, batch, steps, *overrides = sys.argv[1:]
    print(json.dumps(child(kind, int(width), int(batch), int(steps), overrides)))
