"""Diffusion section of ``make bench``: the subspace attack's cost and its effect on the concept loss.

On the job's diffusion model (``task=diffusion_attack`` composed with the Hydra overrides; the tiny
offline pipeline by default), with the job's concept images and prompts:

- step time (median over the timed steps, after the first) and peak memory (resident-set growth over
  what the process held before the attack on CPU, sampled every 2 ms, so the second attack shows only
  growth beyond the first's; ``torch.cuda.max_memory_allocated`` on GPU, per attack) of the
  subspace attack and of the UnlearnDiffAtk-style baseline, both for ``--diffusion-steps`` steps with
  ``--diffusion-tokens`` tokens;
- the denoising loss on the concept images over the job's fixed draws: no attack tokens, random
  vocabulary tokens (mean over ``loss.random_sets`` sets), the attack; the same through the subspace
  defence built from the attack's tokens; the largest |cos| between the attack's tokens.

Targets (the issue's): the attack's loss below the random tokens'; max |cos| <= 1e-4; through the
defence, the attack's gain over random tokens gone (at most 10% of its undefended gain).
``--sections diffusion``.
"""

from __future__ import annotations

import statistics
import time

from scripts.bench_common import PeakRSS, compose_config, rss_mb


def _setup(overrides: list[str]):
    import torch

    from runner.diffusion import concept
    from runner.diffusion.base import AttackContext
    from runner.diffusion.loss import DenoisingLoss
    from runner.diffusion.pipeline import load_pipeline
    from runner.diffusion.prompts import PromptEncoder
    from runner.precision import resolve

    cfg = compose_config("task=diffusion_attack", *overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg.precision = resolve(cfg.precision, device)["used"]
    pipe = load_pipeline(cfg.diffusion_model, device, cfg.generation.scheduler)
    encoder = PromptEncoder(pipe.tokenizer, pipe.text_encoder, device)
    images = concept.images(cfg.concept, pipe, device)
    loss = DenoisingLoss(pipe, concept.to_tensor(images), concept.train_prompts(cfg.concept), device, cfg.precision)
    ctx = AttackContext(
        encoder=encoder,
        loss=loss,
        vocab=encoder.vocab,
        tokenizer=pipe.tokenizer,
        seed=cfg.seed,
        precision=cfg.precision,
    )
    return cfg, pipe, ctx, device


def _timed_fit(attack, ctx, device):
    import torch

    before = rss_mb()
    sampler = PeakRSS()
    sampler.start()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stamps = []
    original = ctx.loss.loss

    def stamped(*args, **kwargs):  # a time stamp at the start of every step's loss
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        return original(*args, **kwargs)

    ctx.loss.loss = stamped
    try:
        result = attack.fit(ctx)
    finally:
        ctx.loss.loss = original
        sampler.stop()
    end = time.perf_counter()
    steps = [b - a for a, b in zip(stamps, [*stamps[1:], end], strict=True)][1:]  # the first step warms up
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else sampler.peak - before
    return result, (statistics.median(steps) if steps else float("nan")), peak


def diffusion_section(args) -> None:
    from runner.diffusion.attacks import SubspaceAttack, TokenEmbeddingAttack, random_tokens, special_ids
    from runner.diffusion.defense import SubspaceDefense

    cfg, pipe, ctx, device = _setup(args.overrides)
    k, steps = args.diffusion_tokens, args.diffusion_steps
    attacks = {
        "subspace": SubspaceAttack(**{**_options(cfg.defense.learn), "n_tokens": k, "steps": steps}),
        "unlearndiffatk": TokenEmbeddingAttack(
            n_tokens=k, steps=steps, lr=1e-2, batch_size=cfg.defense.learn.batch_size
        ),
    }
    rows = {}
    for name, attack in attacks.items():
        rows[name] = _timed_fit(attack, ctx, device)
    result = rows["subspace"][0]
    slots = result.embeddings.to(device)
    randoms = [
        random_tokens(ctx.vocab, k, cfg.seed + 1 + r, special_ids(pipe.tokenizer))[0].to(device)
        for r in range(cfg.loss.random_sets)
    ]
    defense = SubspaceDefense(subspace="learn", learn={"_target_": "runner.diffusion.attacks.SubspaceAttack"})
    defense.set_subspace(slots)

    def measure(s, d=None):
        sets = s if isinstance(s, list) else [s]
        values = [
            ctx.loss.evaluate(ctx.encoder, x, d, cfg.loss.draws, cfg.loss.seed, cfg.loss.batch_size) for x in sets
        ]
        return sum(values) / len(values)

    losses = {
        "no attack": measure(None),
        "random tokens": measure(randoms),
        "subspace attack": measure(slots),
        "unlearndiffatk": measure(rows["unlearndiffatk"][0].embeddings.to(device)),
        "defended: no attack": measure(None, defense),
        "defended: random tokens": measure(randoms, defense),
        "defended: subspace attack": measure(slots, defense),
    }
    model = cfg.diffusion_model.name
    print(f"\n## Diffusion: attack tokens ({model}, {cfg.precision}, {device.type}, K={k}, {steps} steps)\n")
    print("| attack | step (s) | peak memory (MiB) | max cos between tokens |")
    print("|---|---|---|---|")
    for name, (res, step, peak) in rows.items():
        print(f"| {name} | {step:.3f} | {peak:.0f} | {res.training['max_abs_cosine']:.1e} |")
    print(f"\nconcept denoising loss over {cfg.loss.draws} fixed draws:\n")
    print("| tokens | loss |")
    print("|---|---|")
    for name, value in losses.items():
        print(f"| {name} | {value:.5f} |")
    gain = losses["random tokens"] - losses["subspace attack"]
    defended_gain = losses["defended: random tokens"] - losses["defended: subspace attack"]
    cos = result.training["max_abs_cosine"]
    print(
        f"\nattack gain over random tokens: {gain:.5f} ({'ok' if gain > 0 else 'NOT LOWER'}); "
        f"max |cos| {cos:.1e} ({'ok' if cos <= 1e-4 else 'OVER'}); through the defence: {defended_gain:.5f} "
        f"({defended_gain / gain if gain else float('nan'):.1%} of the gain; target <= 10%: "
        f"{'ok' if gain > 0 and defended_gain <= 0.1 * gain else 'OVER'})"
    )
    print("top words per token: " + "; ".join(", ".join(w["word"] for w in ws[:5]) for ws in result.words))


def _options(node) -> dict:
    """A subspace attack node's options (``defense.learn``: the subspace attack of this config)."""
    from omegaconf import OmegaConf

    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "_target_"}
