"""The robustness stage: every attack of ``robustness_attack`` on the unlearned model, then on each control.

Order: the unlearned model (clean, then each attack), then each control model the job has (the
target, then the retain model: their weights loaded into the same model object, one at a time),
then the unlearned weights back, so a fine-tuning attack after this stage starts from them.

Recovery of a point = (after - unlearned) / (target - unlearned): ``after`` the unlearned model's
forget ROUGE under the attack setting, ``unlearned`` its forget ROUGE without attack, ``target``
the target model's under the same attack setting (quantized the same way, prefilled the same
way...). 0: the attack brings nothing back; 1: as much as the target model shows under the same
attack. None where target and unlearned differ by less than ``MIN_GAP`` (nothing was forgotten).
"""

from __future__ import annotations

import logging
import time

from omegaconf import DictConfig, OmegaConf

from runner.components import build
from runner.errors import ConfigError
from runner.robustness.base import KEY, METRIC, ProbeContext, QAProbe, clean_value

log = logging.getLogger(__name__)
MIN_GAP = 1e-6


def build_attacks(node) -> list[QAProbe]:
    """The attacks of the ``robustness_attack`` mapping (name -> node), in config order; none for null / empty."""
    if node is None:
        return []
    if not isinstance(node, (DictConfig, dict)):
        raise ConfigError(
            KEY, f"must be a mapping of attacks, got {node!r}", "e.g. robustness_attack=[quantize,prefill]"
        )
    attacks = []
    for name, sub in node.items():
        if sub is None:
            continue
        if "_target_" not in sub:
            raise ConfigError(f"{KEY}.{name}", "names no attack class", "choose an option of conf/robustness_attack")
        options = OmegaConf.to_container(sub, resolve=True) if isinstance(sub, DictConfig) else dict(sub)
        attacks.append(build({**options, "name": options.get("name", name)}, QAProbe, f"{KEY}.{name}"))
    return attacks


def check_config(node) -> None:
    """At config validation: every attack builds (its constructor checks its options and the device)."""
    build_attacks(node)


def check_data(node, bench, tokenizer, fmt, max_length: int) -> None:
    """Once the benchmark is built, before any fine-tuning: the checks that need its forget answers."""
    attacks = build_attacks(node)
    if not attacks:
        return
    rows = bench.forget_rows
    if not rows or not all("question" in r and "answer" in r for r in rows):
        raise ConfigError(
            KEY,
            f"the battery asks forget questions and scores the answers, and benchmark={bench.name} has no "
            "question/answer forget rows",
            "use benchmark=tofu, or robustness_attack=none",
        )
    for attack in attacks:
        attack.check_data(rows, tokenizer, fmt, max_length)


def recovery(after: float, unlearned: float, target: float | None) -> float | None:
    """(after - unlearned) / (target - unlearned); None without a target or when the two are the same."""
    if target is None or abs(target - unlearned) < MIN_GAP:
        return None
    return (after - unlearned) / (target - unlearned)


def run_battery(node, ctx: ProbeContext, controls: dict, restore) -> dict:
    """results.json's ``robustness``: each attack's points on the unlearned model and the controls.

    ``controls``: kind -> a function that loads that model's weights into ``ctx.model``; ``restore``
    puts the unlearned weights back (called last, also after an error).
    """
    attacks = build_attacks(node)
    questions = max(a.questions for a in attacks)
    clean, raw, seconds = {}, {}, {}
    try:
        for kind, load in [("unlearned", None), *controls.items()]:
            if load is not None:
                load()
            probe = ProbeContext(**{**ctx.__dict__, "model_kind": kind})
            # attacks that ask the same number of questions share one clean pass
            by_count = {n: clean_value(probe, n) for n in sorted({a.questions for a in attacks})}
            clean[kind] = {a.name: by_count[a.questions] for a in attacks}
            for attack in attacks:
                started = time.perf_counter()
                raw[(kind, attack.name)] = attack.run(probe)
                seconds[f"{attack.name}.{kind}"] = time.perf_counter() - started
                values = ", ".join(f"{p['setting']}: {p['value']:.3f}" for p in raw[(kind, attack.name)])
                log.info(
                    "robustness %s on the %s model (clean %.3f): %s",
                    attack.name,
                    kind,
                    clean[kind][attack.name],
                    values,
                )
    finally:
        restore()
    points = []
    for attack in attacks:
        for i, point in enumerate(raw[("unlearned", attack.name)]):
            before = clean["unlearned"][attack.name]
            refs = {kind: raw[(kind, attack.name)][i]["value"] for kind in controls}
            target = refs.get("target")
            points.append(
                {
                    "attack": attack.name,
                    **point,
                    "unlearned": before,
                    "after": point["value"],
                    **{f"{kind}_after": v for kind, v in refs.items()},
                    **{f"{kind}_clean": clean[kind][attack.name] for kind in controls},
                    "recovery": recovery(point["value"], before, target),
                    "controls": {kind: raw[(kind, attack.name)][i] for kind in controls},
                }
            )
            log.info(
                "robustness %s %s: %s %.3f -> %.3f (target %s), recovery %s",
                attack.name, point["setting"], METRIC, before, point["value"], target, points[-1]["recovery"],
            )  # fmt: skip
    return {"metric": METRIC, "questions": questions, "clean": clean, "points": points, "seconds": seconds}
