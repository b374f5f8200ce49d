"""Peak GPU memory of a whole job on a 1B-parameter model under ``distributed=none`` and ``zero3_offload``.

    python scripts/gpu_memory_check.py                 # both strategies, one GPU, a table at the end
    python scripts/gpu_memory_check.py --only none     # one of them

Needs one CUDA GPU and no network: the model is the runner's ``tiny`` Llama source scaled to
Llama-3.2-1B's shape (hidden 2048, MLP 8192, 16 layers, 32 heads / 8 KV heads; random weights;
the locally trained tokenizer keeps the vocabulary small, so the ~1.0B parameters are nearly all in
the decoder layers). Each strategy runs the real pipeline (TOFU target and retain fine-tuning,
NPO unlearning, evaluation) in its own process and reports torch's peak allocated and reserved
memory over the whole job, beside the on-paper estimate in docs/scaling-out.md. ZeRO-Offload compiles
DeepSpeed's CPU Adam on first use (a C++ compiler is needed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPE = [
    "model.tiny.hidden_size=2048",
    "model.tiny.intermediate_size=8192",
    "model.tiny.num_layers=16",
    "model.tiny.num_heads=32",
    "model.tiny.num_kv_heads=8",
    "model.tiny.vocab_size=8192",
]
# short stages: the peak is reached within the first steps of each training stage
JOB = [
    "experiment=tofu_smoke_tiny",
    "precision=bf16",
    "benchmark.finetune.epochs=1",
    "benchmark.finetune.max_steps=4",
    "unlearn.max_steps=4",
    "unlearn.batch_size=4",
    "eval.batch_size=8",
]
# bytes per parameter on the GPU during training, from docs/scaling-out.md's estimate (one GPU)
PAPER = {
    "none": "16 B/param (fp32 weights, grads, AdamW moments) ~ 16 GB + activations",
    "zero3_offload": "~4 B/param (the whole fp32 model outside training) ~ 4 GB + live layers + activations",
}


def one(strategy: str, out_dir: Path) -> dict:
    import torch
    from hydra import compose, initialize_config_dir

    from runner import job

    overrides = [*JOB, *SHAPE, f"distributed={strategy}", f"paths.cache_dir={out_dir / 'cache'}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    torch.cuda.reset_peak_memory_stats()
    result = job.run(cfg, out_dir / strategy)
    n_params = None  # counted from the saved config: decoder layers, tied embedding, final norm
    cache = out_dir / "cache" / "models"
    for config in cache.glob("*/config.json"):
        c = json.loads(config.read_text())
        h, i, n, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
        kv = c["num_key_value_heads"] * h // c["num_attention_heads"]
        n_params = n * (2 * h * h + 2 * h * kv + 3 * h * i + 2 * h) + v * h + h
    return {
        "strategy": strategy,
        "status": result["status"],
        "params": n_params,
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "gpu": torch.cuda.get_device_name(0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(PAPER))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="where to write runs and caches (default: a temporary dir)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu-memory-"))
    if args.child:
        print("RESULT " + json.dumps(one(args.only, out)), flush=True)
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU: this check measures GPU memory")
    rows = []
    for strategy in [args.only] if args.only else sorted(PAPER):
        cmd = [sys.executable, __file__, "--child", "--only", strategy, "--out", str(out)]
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ}, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(proc.stderr[-3000:], file=sys.stderr)
            rows.append({"strategy": strategy, "status": f"failed (exit {proc.returncode})"})
            continue
        rows.append(json.loads(line[len("RESULT ") :]))
    print("| strategy | params | peak allocated (GiB) | peak reserved (GiB) | on paper | status |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        params = f"{r['params'] / 1e9:.2f}B" if r.get("params") else "?"
        print(
            f"| {r['strategy']} | {params} | {r.get('peak_allocated_gib', '-')} | {r.get('peak_reserved_gib', '-')} "
            f"| {PAPER[r['strategy']]} | {r['status']} |"
        )
    print(f"(runs and caches in {out}; GPU: {rows[0].get('gpu', '?')})")


if __name__ == "__main__":
    main()
