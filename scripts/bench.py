"""Per-step cost of each unlearning method on the default model, relative to GA and GradDiff.

Each method runs in its own process (so peak memory is its own): the same
forget + retain batch, the default precision and trainable layers, a few
warm-up steps, then the median of timed steps (forward, backward, AdamW).
Peak memory is the highest resident-set growth during the steps over the
loaded, prepared model on CPU (sampled every 2 ms), or
``torch.cuda.max_memory_allocated`` on GPU.

    python scripts/bench.py [--methods ga graddiff npo ...] [--steps 5] [--batch 8] [hydra overrides]

MCQ section (WMDP / MMLU scoring speed): questions per second of the runner's
scorer (runner.benchmarks.mcq) against lm-eval-harness (HFLM over the same
in-memory model) on the same shipped MMLU questions, same batch size and
precision; each system runs once to warm up, then the best of ``--mcq-rounds``
timed runs counts.

Precision section: one NPO step in fp32 and in bf16 autocast, and what ``precision=auto`` picks
on this machine (it must not be the slower of the two by more than noise). Evaluation section:
the default TOFU evaluation stage before, with the privacy family at the same answer caps (target
<= 1.35x) and as default (200-token answers), alternating (scripts/bench_eval.py; ``--eval-rounds``). ``--sections eval_scoring``:
its scoring (every prompt+answer sequence vs each prompt once, from its KV cache) and greedy answers
(old fixed caps vs caps derived from the gold answers).

Generation section (scripts/bench_generation.py): the compiled static-cache loop against ``model.generate``
and the eager loop, batch ``--gen-batches`` (8 32), ``--gen-tokens`` (256) new tokens, greedy and CyclicReflex,
compile time and break-even tokens, and peak memory of the static vs the dynamic cache. Target >= 1.5x with
the same greedy tokens; memory <= 1.2x. ``--sections gen``.
Distillation section (scripts/bench_distill.py): training time and tokens of EPiC at ratio 0.5
against the full traces; the time ratio should stay within 10% of the token ratio. ``--sections distill``.
R²MU section (scripts/bench_r2mu.py): one R²MU step against one RMU step on the same forget + retain
batch (R²MU adds a trace and a chain-of-thought batch of the same size), WMDP fixtures; target <= 2.2x.
``--sections r2mu``.
Cost section (scripts/bench_cost.py): this machine's matmul GFLOP/s, each method's step against the
real-token floor (padding-free now vs padded before), and the cost curve over batch and length.
``--sections cost``. Answers section (scripts/bench_answers.py): the default TOFU evaluation's greedy answers and a
32-problem GSM8K evaluation at ``--gen-tokens``, wall time before (eager loop) and after (compile=auto, compiled),
the same answers checked. ``--sections answers``.
Diffusion section (scripts/bench_diffusion.py): step time and peak memory of the subspace attack and
the UnlearnDiffAtk-style baseline on the diffusion model (tiny offline pipeline by default; Hydra
overrides of task=diffusion_attack choose another), the concept denoising loss with no, random and
attack tokens, with and without the subspace defence, and the tokens' orthogonality.
``--sections diffusion``; ``--diffusion-steps``, ``--diffusion-tokens``.
Alternating section (scripts/bench_methods.py): each method's step against GradDiff's in one process, one step
of each in turn, so the load of a busy host cancels in the ratios. ``--sections alternating``.
GCG section (scripts/bench_gcg.py): seconds per GCG step and peak memory against one forward + backward of a
candidate batch; targets <= 1.5x. ``--sections gcg``.
``--sections precision eval eval_scoring methods alternating mcq gen distill cost answers diffusion r2mu gcg`` picks what runs
(all by default).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# every method that trains on a per-step loss (task_vector's cost is a plain fine-tune: GA-like)
DEFAULT_METHODS = [
    *("ga", "graddiff", "npo", "simnpo", "idkdpo", "wga", "undial", "rmu", "blur", "ilu"),
    *("ceu", "satimp", "pdu", "dpo", "altpo"),
]
# (method, reference, quantity, bound): the targets the issues set
TARGETS = [
    ("npo", "graddiff", "step_s", 1.15),
    ("rmu", "ga", "step_s", 0.35),
    ("rmu", "ga", "peak_mb", 0.7),
    ("blur", "graddiff", "step_s", 2.3),
    ("ilu", "npo", "step_s", 4.0),
]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.bench_answers import answers as answers_section  # noqa: E402
from scripts.bench_common import METHOD_OVERRIDES, ROOT, PeakRSS, compose_config, rss_mb, timed, unlearn_data  # noqa: E402
from scripts.bench_cost import cost_section, curve_point, model_sizes  # noqa: E402
from scripts.bench_diffusion import diffusion_section  # noqa: E402
from scripts.bench_distill import distill_section  # noqa: E402
from scripts.bench_eval import eval_section  # noqa: E402
from scripts.bench_gcg import gcg_section  # noqa: E402
from scripts.bench_generation import speed as generation_speed  # noqa: E402
from scripts.bench_methods import alternating_section  # noqa: E402
from scripts.bench_r2mu import r2mu_section  # noqa: E402


def measure(method: str, steps: int, batch: int, warmup: int, overrides: list[str], baseline: bool = False) -> dict:
    """One method's step as the one-process trainer runs it: padding-free forward passes, each loss part
    back-propagated on its own, fused AdamW. ``baseline``: the path before those (padded batch, one
    backward of the summed loss, the per-tensor AdamW loop), for the cost section's side by side."""
    import torch

    from runner.benchmarks.base import build_benchmark
    from runner.components import build
    from runner.data.qa import IGNORE, PromptFormat
    from runner.methods.base import Method
    from runner.models import load_model, set_trainable
    from runner.packing import padded_forward
    from runner.precision import resolve
    from runner.scoring import autocast
    from runner.training import backward_by_parts, collate_pairs

    cfg = compose_config(f"method={method}", *METHOD_OVERRIDES.get(method, []), *overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg.precision = resolve(cfg.precision, device)["used"]  # as a job does: auto -> fp32 | bf16
    torch.manual_seed(0)
    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir).resolve())
    set_trainable(model, cfg.model.trainable_layers)
    bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
    data = unlearn_data(cfg, model, tokenizer, bench, batch, cfg.precision)
    pairs = [{"forget": f, "retain": r} for f, r in zip(data.forget, data.retain, strict=True)]
    batch_t = collate_pairs(tokenizer.pad_token_id)(pairs)

    model.to(device)
    batch_t = {k: {n: t.to(device) for n, t in v.items()} for k, v in batch_t.items()}
    loss_obj = build(cfg.method, Method, "method")
    loss_obj.select_trainable(model)
    loss_obj.prepare(data)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-6, **({"foreach": False} if baseline else {"fused": True}))
    backward = backward_by_parts(loss_obj.loss_parts)
    padding = padded_forward if baseline else contextlib.nullcontext
    masks = [batch_t[side]["attention_mask"] for side in ("forget", "retain")]
    labels = [batch_t[side]["labels"][:, 1:] != IGNORE for side in ("forget", "retain")]

    def step():
        with autocast(cfg.precision, device), padding():
            if loss_obj.fills_gradients:  # methods that build their own update (BLUR)
                loss_obj.backward(model, batch_t, 1.0)
            elif baseline:
                loss, _ = loss_obj.loss(model, batch_t)
                loss.backward()
            else:
                backward(model, batch_t, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    rss_before = rss_mb()
    sampler = PeakRSS()
    sampler.start()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [timed(step, device) for _ in range(warmup + steps)][warmup:]
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else sampler.stop() - rss_before
    return {
        "method": method,
        "step_s": statistics.median(times),
        "peak_mb": peak,
        "device": device.type,
        "precision": cfg.precision,
        "padded_tokens": sum(m.numel() for m in masks),
        "real_tokens": sum(int(m.sum()) for m in masks),
        "scored_tokens": sum(int(m.sum()) for m in labels),
    }


def _measure_in_child(method: str, args, overrides: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--one", method, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    cmd += ["--batch", str(args.batch), *overrides]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def precision_section(args) -> None:
    """One NPO step of the default model in fp32 and in bf16 autocast, and what precision=auto picks here."""
    import torch

    from runner.precision import resolve

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = resolve("auto", device)
    steps = {p: _measure_in_child("npo", args, [*args.overrides, f"precision={p}"])["step_s"] for p in ("fp32", "bf16")}
    faster = min(steps, key=steps.get)
    picked, other = steps[chosen["used"]], steps["bf16" if chosen["used"] == "fp32" else "fp32"]
    print(f"\nprecision on {device.type}: one NPO step, batch {args.batch} forget + {args.batch} retain")
    print("| precision | step (s) |")
    print("|---|---|")
    for p, t in steps.items():
        print(f"| {p} | {t:.3f} |")
    verdict = "ok" if picked <= 1.1 * other else "SLOWER"
    print(
        f"bf16 / fp32 step time: {steps['bf16'] / steps['fp32']:.2f}; auto picked {chosen['used']} ({chosen['why']}); "
        f"faster here: {faster}; picked / other: {picked / other:.2f} (target <= 1.1) {verdict}"
    )


def eval_scoring_section(args) -> None:
    """The default TOFU evaluation: scoring every prompt+answer sequence vs each prompt once (KV cache),
    and greedy answers under the old fixed caps vs caps derived from the gold answers."""
    import torch

    from runner.benchmarks.base import build_benchmark
    from runner.benchmarks.tofu import SUITES
    from runner.data.qa import IGNORE, PromptFormat
    from runner.decoding.generate import greedy_generate
    from runner.models import load_model
    from runner.precision import resolve
    from runner.scoring import score_answer_sets, score_sequences

    cfg = compose_config(*args.overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve(cfg.precision, device)["used"]
    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir).resolve())
    model.to(device)
    bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
    bs, pad = cfg.eval.batch_size, tokenizer.pad_token_id
    old_caps = {"forget": 48, "retain": 48, "real_authors": 24, "world_facts": 24}

    def timed(fn, *fn_args):
        start = time.perf_counter()
        out = fn(*fn_args)
        return time.perf_counter() - start, out

    rows, total = [], {"every": 0.0, "shared": 0.0, "old_gen": 0.0, "auto_gen": 0.0}
    for suite in SUITES:
        prompts, answers = bench._scored[suite]
        flat = [
            {"input_ids": p + a, "labels": [IGNORE] * len(p) + a}
            for p, ans in zip(prompts, answers, strict=True)
            for a in ans
        ]
        t_every, every = timed(score_sequences, model, flat, pad, bs, precision, "every")
        t_shared, shared = timed(score_answer_sets, model, prompts, answers, pad, bs, precision, "shared")
        gap = float(abs(np.concatenate(shared)[:, 0] - every[:, 0]).max())
        t_old, _ = timed(greedy_generate, model, tokenizer, prompts, old_caps[suite], bs, precision, "old")
        cap = bench.max_new_tokens[suite]
        t_auto, _ = timed(greedy_generate, model, tokenizer, prompts, cap, bs, precision, "auto")
        rows.append((suite, len(flat), t_every, t_shared, gap, old_caps[suite], t_old, cap, t_auto))
        for k, v in zip(total, (t_every, t_shared, t_old, t_auto), strict=True):
            total[k] += v
    print(f"\nTOFU evaluation of {cfg.model.name} on {device.type} ({precision}), eval batch {bs}")
    print(
        "| suite | sequences | score each (s) | shared prompt (s) | max NLL gap | old cap | gen (s) | auto cap | gen (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for suite, n, te, ts, gap, oc, to, ac, ta in rows:
        print(f"| {suite} | {n} | {te:.1f} | {ts:.1f} | {gap:.1e} | {oc} | {to:.1f} | {ac} | {ta:.1f} |")
    before, after = total["every"] + total["old_gen"], total["shared"] + total["auto_gen"]
    print(
        f"scoring shared / each: {total['shared'] / total['every']:.2f}; generation auto caps / old caps: "
        f"{total['auto_gen'] / total['old_gen']:.2f}; evaluation now / before: {after / before:.2f} "
        f"(target <= 1.25) {'ok' if after <= 1.25 * before else 'OVER'}"
    )


MCQ_SUBJECTS = ["high_school_geography", "computer_security", "college_biology", "virology"]
MCQ_TARGET = 1.0  # runner questions/s over lm-eval's


def mcq_section(args) -> None:
    """Questions/second of the runner vs lm-eval-harness on the shipped MMLU questions (same model, batch, precision)."""
    import tempfile

    import torch

    from runner.metrics import mcq as mcq_metrics
    from runner.models import load_model
    from scripts.lmeval_mmlu import lm_eval_scores, runner_scores

    try:
        import lm_eval
    except ImportError:
        print("\nMCQ: lm-eval-harness is not installed (pip install -e '.[lmeval]'); runner-only numbers skipped")
        return
    cfg = compose_config(*args.overrides)
    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir).resolve())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    per_subject = max(1, args.mcq_questions // len(MCQ_SUBJECTS))
    n = per_subject * len(MCQ_SUBJECTS)
    work = Path(tempfile.mkdtemp(prefix="bench-lmeval-"))
    best = {"runner": float("inf"), "lm-eval": float("inf")}
    for round_ in range(1 + args.mcq_rounds):  # round 0 warms up (kernels, lm-eval's dataset cache)
        ours = runner_scores(model, tokenizer, MCQ_SUBJECTS, per_subject, args.batch, args.mcq_precision)
        theirs = lm_eval_scores(model, tokenizer, MCQ_SUBJECTS, per_subject, args.batch, work, args.mcq_precision)
        if round_:
            best["runner"] = min(best["runner"], ours["seconds"])
            best["lm-eval"] = min(best["lm-eval"], theirs["seconds"])
    same = sum(
        int(
            (
                mcq_metrics.predictions(ours["subjects"][s]["logprobs"])
                == mcq_metrics.predictions(theirs["subjects"][s]["logprobs"])
            ).sum()
        )
        for s in MCQ_SUBJECTS
    )
    print(
        f"\nMCQ scoring on {device.type}: {cfg.model.name}, {n} shipped MMLU questions ({per_subject} from each of "
        f"{', '.join(MCQ_SUBJECTS)}), batch {args.batch}, {args.mcq_precision}, best of {args.mcq_rounds}"
    )
    print("| system | questions/s | seconds |")
    print("|---|---|---|")
    print(f"| runner (runner.benchmarks.mcq) | {n / best['runner']:.1f} | {best['runner']:.2f} |")
    print(f"| lm-eval-harness {lm_eval.__version__} | {n / best['lm-eval']:.1f} | {best['lm-eval']:.2f} |")
    ratio = best["lm-eval"] / best["runner"]
    verdict = "ok" if ratio >= MCQ_TARGET else "UNDER"
    print(
        f"runner / lm-eval questions/s: {ratio:.2f}x (target >= {MCQ_TARGET}) {verdict}; same prediction on {same}/{n}"
    )


GEN_TARGET = 0.8  # runner tokens/s over plain generate's


def methods_section(args) -> None:
    """Per-step time and peak memory of each method, each in its own process, against GA and GradDiff.

    ``--method-rounds`` > 1 measures the whole list that many times, alternating, and keeps each method's median
    step and peak: on a loaded host the load then drifts over every method alike."""
    runs: dict[str, list[dict]] = {}
    for round_ in range(args.method_rounds):
        for method in args.methods:
            runs.setdefault(method, []).append(_measure_in_child(method, args, args.overrides))
            print(f"measured {method} (round {round_ + 1})", file=sys.stderr)
    rows = [
        {
            **measured[0],
            "step_s": statistics.median(r["step_s"] for r in measured),
            "peak_mb": statistics.median(r["peak_mb"] for r in measured),
        }
        for measured in runs.values()
    ]
    by_name = {r["method"]: r for r in rows}
    ga = by_name.get("ga", rows[0])
    gd = by_name.get("graddiff")
    print(
        f"\nper-step cost on {rows[0]['device']} ({rows[0]['precision']}), batch {args.batch} forget + {args.batch} retain"
    )
    print("| method | step (s) | step / GA | step / GradDiff | peak memory (MiB) | memory / GA |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        vs_gd = f"{r['step_s'] / gd['step_s']:.2f}" if gd else "-"
        print(
            f"| {r['method']} | {r['step_s']:.3f} | {r['step_s'] / ga['step_s']:.2f} | {vs_gd} "
            f"| {r['peak_mb']:.0f} | {r['peak_mb'] / max(ga['peak_mb'], 1e-9):.2f} |"
        )
    print()
    for method, ref, quantity, bound in TARGETS:
        if method in by_name and ref in by_name:
            ratio = by_name[method][quantity] / max(by_name[ref][quantity], 1e-9)
            verdict = "ok" if ratio <= bound else "OVER"
            print(f"{method} / {ref} {quantity}: {ratio:.2f} (target <= {bound}) {verdict}")


SECTIONS = {
    "precision": precision_section,
    "eval": eval_section,
    "eval_scoring": eval_scoring_section,
    "methods": methods_section,
    "alternating": alternating_section,
    "mcq": mcq_section,
    "gen": generation_speed,
    "distill": distill_section,
    "cost": cost_section,
    "answers": answers_section,
    "diffusion": diffusion_section,
    "r2mu": r2mu_section,
    "gcg": gcg_section,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--method-rounds", type=int, default=1, help="times the methods section measures its list")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS), help="what to measure")
    ap.add_argument("--eval-rounds", type=int, default=2, help="alternating before / after runs in the eval section")
    ap.add_argument(
        "--eval-arms", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"], help="eval section arms"
    )
    ap.add_argument("--mcq-questions", type=int, default=48, help="MMLU questions in the MCQ section")
    ap.add_argument("--mcq-rounds", type=int, default=2, help="timed runs per system (after one warm-up)")
    ap.add_argument("--mcq-precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--gen-batches", type=int, nargs="+", default=[8, 32], help="batch sizes of the generation section")
    ap.add_argument("--gen-tokens", type=int, default=256, help="new tokens per prompt in the generation section")
    ap.add_argument("--gsm8k-problems", type=int, default=32, help="problems of the answers section's GSM8K run")
    ap.add_argument("--gen-rounds", type=int, default=2, help="timed runs per system (after one warm-up)")
    ap.add_argument(
        "--tofu-compiled",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="answers section: time compile=true on the TOFU answers too (on a CPU each batch size 40 -> 32 -> ... -> 1 "
        "is a cold compile of minutes)",
    )
    ap.add_argument("--distill-traces", type=int, default=64, help="GSM8K traces in the distillation section")
    ap.add_argument("--distill-rounds", type=int, default=2, help="timed runs per condensation (after one warm-up)")
    ap.add_argument("--cost-methods", nargs="+", default=["npo", "graddiff"], help="methods in the cost section")
    ap.add_argument("--curve-batch", type=int, default=2, help="rows at 1x in the cost curve")
    ap.add_argument("--curve-lengths", type=int, nargs="+", default=[128, 512], help="window lengths of the cost curve")
    ap.add_argument("--curve-steps", type=int, default=2, help="timed steps per cost-curve point (after one warm-up)")
    ap.add_argument(
        "--curve-checkpointing", action="store_true", help="the cost curve again with gradient checkpointing"
    )
    ap.add_argument("--diffusion-steps", type=int, default=100, help="attack steps in the diffusion section")
    ap.add_argument("--diffusion-tokens", type=int, default=3, help="attack tokens (K) in the diffusion section")
    ap.add_argument("--gcg-width", type=int, default=64, help="GCG candidates per step in the GCG section")
    ap.add_argument("--gcg-batch", type=int, default=32, help="GCG candidates per forward pass")
    ap.add_argument("--gcg-steps", type=int, default=3, help="GCG steps timed (their mean per step)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--curve", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=tiny")
    args = ap.parse_args()
    if args.one:  # child process: measure one method, print JSON
        print(json.dumps(measure(args.one, args.steps, args.batch, args.warmup, args.overrides, args.baseline)))
        return
    if args.curve:  # child process: one point of the cost curve
        batch, length = args.curve
        print(json.dumps(curve_point(batch, length, args.steps, args.warmup, args.checkpointing, args.overrides)))
        return
    if args.sizes:  # child process: the model's parameter counts
        from runner.models import load_model

        cfg = compose_config(*args.overrides)
        print(json.dumps(model_sizes(load_model(cfg.model, Path(cfg.paths.cache_dir).resolve())[0])))
        return
    for name in args.sections:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
