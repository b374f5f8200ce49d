"""The diffusion attack job (``task=diffusion_attack``):

    pipeline -> concept images -> generate (no attack) -> attack -> generate (attacked)
             -> [defence: fit -> generate (defended, attack through the defence, adaptive attack)]
             -> denoising losses -> record

Rows of ``metrics`` (each with ``asr`` where images were generated, and ``denoising_loss``, the mean
loss on the concept images over fixed draws):

- ``no_attack``: the evaluation prompts as they are;
- ``random_tokens``: K random vocabulary tokens in the attack's slots (loss only);
- ``attacked``: the job's attack (ASR counts the prompts ``no_attack`` already flagged);
- with a defence: ``defended`` (no attack, defended encoder), ``defended_random``,
  ``attacked_defended`` (the same attack tokens through the defence) and, with ``defense.adaptive``,
  ``adaptive_defended`` (the attack trained again, through the defence).

``diffusion`` in results.json: the prompts, the per-token word lists, the attack's training numbers
(loss curve, seconds per step, peak memory, max |cos| between tokens), the loss gains, the defence's
description and the files written to the run directory: ``images/<row>.png`` (grids: prompts as rows,
a red frame where the detector fired), ``tokens.md`` (the word lists) and ``attack_tokens.safetensors``
(the attack's embeddings: a later run's ``defense.subspace``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from runner import distributed
from runner.components import build
from runner.errors import ConfigError
from runner.options import Range, check_components, check_number

log = logging.getLogger(__name__)
TASK = "diffusion_attack"


def _whole(cfg, key: str, at_least: int = 1) -> None:
    from omegaconf import OmegaConf

    check_number(key, OmegaConf.select(cfg, key), Range(low=at_least, whole=True, example=str(max(at_least, 1))))


def _no_missing(cfg, group: str) -> None:
    """A required value the option leaves to the user (``???``) is named before anything runs."""
    from omegaconf import OmegaConf

    node = cfg.get(group)
    if node is None:
        return

    def walk(value, key):
        if OmegaConf.is_config(value):
            for k in value.keys() if hasattr(value, "keys") else range(len(value)):
                if OmegaConf.is_missing(value, k):
                    raise ConfigError(f"{key}.{k}", "is required by this option", f"set {key}.{k}=...")
                walk(value._get_node(k), f"{key}.{k}")

    walk(node, group)


def inputs(cfg: DictConfig) -> list:
    """What a diffusion job reads, for its job key: the prompt files, image folders, local checkpoints and
    classifier directories its groups name, and the tiny pipeline's shipped vocabulary."""
    from runner.inputs import Input, scan

    found = []
    for group in ("diffusion_model", "concept", "detector", "defense"):
        if cfg.get(group) is not None:
            found += scan(cfg[group], group)
    if (cfg.get("diffusion_model") or {}).get("source") == "tiny":
        from runner.diffusion.pipeline import TINY_TOKENIZER_DIR

        found += [
            Input.file("diffusion_model.tiny", TINY_TOKENIZER_DIR / n, format="bytes")
            for n in ("vocab.json", "merges.txt")
        ]
    return found


def check_config(cfg: DictConfig) -> None:
    """Every diffusion check that needs no model: the model node, the concept, the generation settings,
    and the attack, defence and detector built (their constructors check their options)."""
    from omegaconf import OmegaConf

    from runner.diffusion import concept, pipeline
    from runner.diffusion.base import Attack, Defense, Detector

    for group in ("diffusion_model", "concept", "attack", "detector", "generation"):
        if cfg.get(group) is None:
            raise ConfigError(group, "is missing", f"choose a {group} option (task=diffusion_attack sets defaults)")
    if cfg.get("distributed") is not None:
        raise ConfigError("distributed", "the diffusion attack job runs in one process", "set distributed=none")
    for group in ("diffusion_model", "concept", "attack", "defense", "detector", "utility"):
        _no_missing(cfg, group)
    pipeline.check(cfg.diffusion_model)
    pipeline.check_scheduler(cfg.generation.get("scheduler"))
    concept.check(cfg.concept)
    for key in (
        "generation.steps",
        "generation.images_per_prompt",
        "generation.batch_size",
        "loss.draws",
        "loss.batch_size",
        "loss.random_sets",
    ):
        _whole(cfg, key)
    _whole(cfg, "generation.seed", 0)
    _whole(cfg, "loss.seed", 0)
    check_number("generation.guidance", cfg.generation.get("guidance"), Range(low=0, example="7.5"))
    check_components(cfg)  # the attack's, defence's and detector's declared option ranges (runner/options.py)
    positions = cfg.diffusion_model.tiny.max_length if cfg.diffusion_model.source == "tiny" else 77  # SD's CLIP
    for key in ("attack.n_tokens", "defense.learn.n_tokens"):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, int) and value > positions - 3:
            raise ConfigError(
                key,
                f"{value} tokens leave no room for a prompt in the text encoder's {positions} positions",
                f"at most {positions - 3}",
            )
    build(cfg.attack, Attack, "attack")
    build(cfg.get("defense"), Defense, "defense")
    build(cfg.detector, Detector, "detector")
    if (cfg.get("utility") or {}).get("enabled"):
        from runner.diffusion.utility import read_captions

        read_captions(str(cfg.utility.captions), 1)


def run_diffusion_attack(cfg: DictConfig, run_dir: Path, cache_dir: Path, record) -> None:
    from safetensors.torch import save_file

    from runner.diffusion import concept
    from runner.diffusion.attacks import random_tokens, special_ids
    from runner.diffusion.base import Attack, AttackContext, Defense, Detector
    from runner.diffusion.generate import generate, grid, judge, success_rate
    from runner.diffusion.loss import DenoisingLoss
    from runner.diffusion.pipeline import load_pipeline
    from runner.diffusion.prompts import PromptEncoder

    if not distributed.is_main_process():
        return
    device, precision = distributed.device(), cfg.precision
    attack = build(cfg.attack, Attack, "attack")
    defense = build(cfg.get("defense"), Defense, "defense")
    detector = build(cfg.detector, Detector, "detector")
    prompts = concept.prompts(cfg.concept)
    images_dir = run_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)

    with record.stage("load_model"):
        pipe = load_pipeline(cfg.diffusion_model, device, cfg.generation.scheduler)
        detector.prepare(device)
        encoder = PromptEncoder(pipe.tokenizer, pipe.text_encoder, device)
    with record.stage("concept_images"):
        pictures = concept.images(cfg.concept, pipe, device)
        grid([pictures], [{"flags": [False] * len(pictures)}]).save(images_dir / "concept.png")
        detail_images = {"concept": "images/concept.png"}
        loss = DenoisingLoss(pipe, concept.to_tensor(pictures), concept.train_prompts(cfg.concept), device, precision)
    ctx = AttackContext(
        encoder=encoder, loss=loss, vocab=encoder.vocab, tokenizer=pipe.tokenizer, seed=cfg.seed, precision=precision
    )
    metrics, per_example, detail = {}, {}, {"prompts": prompts, "images": detail_images}
    judged_rows: dict[str, list] = {}

    def evaluate(row: str, slots, with_defense, baseline: str | None = None):
        """Generate, judge, grid; ASR (counting ``baseline``'s successes)."""
        with record.stage(f"generate_{row}"):
            ims = generate(
                pipe, encoder, prompts, slots, with_defense, cfg.generation, device, precision, f"generate_{row}"
            )
            judged = judge(detector, ims)
        judged_rows[row] = judged
        asr, hits = success_rate(judged, judged_rows.get(baseline) if baseline else None)
        path = images_dir / f"{row}.png"
        grid(ims, judged).save(path)
        detail["images"][row] = str(path.relative_to(run_dir))
        per_example[row] = {
            "success": hits,
            "success_rate": [j["rate"] for j in judged],
            "scores": [j["scores"] for j in judged],
            "labels": [j["labels"] for j in judged],
        }
        metrics[row] = {"asr": asr}

    def denoising(row: str, slots, with_defense) -> float:
        """The loss over the fixed draws; for a list of slot sets (the random baseline), their mean."""
        sets = slots if isinstance(slots, list) else [slots]
        values = [
            loss.evaluate(encoder, s, with_defense, cfg.loss.draws, cfg.loss.seed, cfg.loss.batch_size) for s in sets
        ]
        metrics.setdefault(row, {})["denoising_loss"] = sum(values) / len(values)
        return metrics[row]["denoising_loss"]

    evaluate("no_attack", None, None)
    with record.stage("attack"):
        result = attack.fit(ctx)
    slots = result.embeddings.to(device)
    save_file({"embeddings": result.embeddings.contiguous()}, str(run_dir / "attack_tokens.safetensors"))
    evaluate("attacked", slots, None, baseline="no_attack")
    # the random-token baseline: loss.random_sets sets of K vocabulary tokens (seeds seed+1, seed+2, ...)
    drawn = [
        random_tokens(encoder.vocab, attack.n_tokens, cfg.seed + 1 + r, special_ids(pipe.tokenizer))
        for r in range(cfg.loss.random_sets)
    ]
    random_slots = [e.to(device) for e, _ in drawn]
    with record.stage("denoising_loss"):
        denoising("no_attack", None, None)
        denoising("random_tokens", random_slots, None)
        denoising("attacked", slots, None)
    detail["attack"] = {"name": attack.name, "words": result.words, "training": result.training}
    detail["random_tokens"] = [pipe.tokenizer.convert_ids_to_tokens(ids) for _, ids in drawn]
    gains = {"attack_vs_random": metrics["random_tokens"]["denoising_loss"] - metrics["attacked"]["denoising_loss"]}

    if defense is not None:
        with record.stage("defense"):
            defense.fit(ctx, result, attack)
        evaluate("defended", None, defense)
        evaluate("attacked_defended", slots, defense, baseline="defended")
        with record.stage("denoising_loss_defended"):
            denoising("defended", None, defense)
            denoising("defended_random", random_slots, defense)
            denoising("attacked_defended", slots, defense)
        gains["attack_vs_random_defended"] = (
            metrics["defended_random"]["denoising_loss"] - metrics["attacked_defended"]["denoising_loss"]
        )
        detail["defense"] = {"name": defense.name, **defense.describe()}
        if getattr(defense, "adaptive", False):
            with record.stage("adaptive_attack"):
                adaptive = attack.fit(AttackContext(**{**vars(ctx), "defense": defense, "stage": "adaptive_attack"}))
            adaptive_slots = adaptive.embeddings.to(device)
            evaluate("adaptive_defended", adaptive_slots, defense, baseline="defended")
            denoising("adaptive_defended", adaptive_slots, defense)
            gains["adaptive_vs_random_defended"] = (
                metrics["defended_random"]["denoising_loss"] - metrics["adaptive_defended"]["denoising_loss"]
            )
            detail["adaptive"] = {"words": adaptive.words, "training": adaptive.training}

    if (cfg.get("utility") or {}).get("enabled"):
        _utility(cfg, pipe, encoder, defense, device, precision, metrics, record)

    detail["loss_gain"] = gains
    detail["tokens_file"] = "attack_tokens.safetensors"
    detail["word_lists"] = "tokens.md"
    (run_dir / "tokens.md").write_text(words_markdown(detail))
    record.data["metrics"] = metrics
    record.data["per_example"] = per_example
    record.data["training"] = {"attack": result.training}
    record.data["diffusion"] = detail


def _utility(cfg, pipe, encoder, defense, device, precision, metrics, record) -> None:
    from runner.diffusion.generate import generate
    from runner.diffusion.utility import Utility

    with record.stage("utility"):
        util = Utility(cfg.utility, device)
        gen_cfg = {**cfg.generation, "images_per_prompt": 1}
        from omegaconf import OmegaConf

        gen_cfg = OmegaConf.create(gen_cfg)
        for row, d in (("no_attack", None), ("defended", defense)):
            if row == "defended" and d is None:
                continue
            numbers = util.measure(
                lambda caps, d=d, row=row: [
                    r[0] for r in generate(pipe, encoder, caps, None, d, gen_cfg, device, precision, f"utility_{row}")
                ]
            )
            metrics.setdefault(row, {}).update(numbers)


def words_markdown(detail: dict) -> str:
    """The per-token word lists (and the adaptive attack's) as Markdown."""
    lines = [f"# Attack tokens ({detail['attack']['name']})", ""]
    for title, block in (
        ("attack", detail["attack"]),
        ("adaptive attack (through the defence)", detail.get("adaptive")),
    ):
        if not block or not block.get("words"):
            continue
        lines += [f"## {title}", "", "| token | top vocabulary words (weight) |", "|---|---|"]
        for k, words in enumerate(block["words"]):
            cells = ", ".join(f"{w['word']} ({w['weight']:.3f})" for w in words)
            lines.append(f"| {k + 1} | {cells} |")
        lines.append("")
    return "\n".join(lines)
