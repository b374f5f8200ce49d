"""The coreset stage: select part of the forget set before unlearning, and the unlearning steps that go with it.

The coreset paper compares runs at equal optimisation steps, so with ``match_steps`` the
unlearning trainer takes as many steps as the full-set run would:
ceil(N / (batch * grad_accum * world_size)) * epochs.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from runner.components import build
from runner.coreset.base import Pool, Selector, coreset_size
from runner.distributed import from_main, world_size
from runner.errors import ConfigError

log = logging.getLogger(__name__)
KEY = "coreset"


def check_config(coreset_cfg, seed: int) -> None:
    """At config validation, before any training: the selector builds (its constructor checks its options)."""
    if coreset_cfg is not None and "_target_" not in coreset_cfg and "ratio" in coreset_cfg:
        # `coreset=none` with a ratio laid over it (+coreset.ratio=..., or an experiment's coreset block)
        raise ConfigError(
            "coreset.ratio",
            f"coreset=none unlearns with the whole forget set, so ratio {coreset_cfg.ratio} would be ignored",
            "choose a selector (coreset=random|loss|gradnorm|moderate|keyword) or leave coreset.ratio unset",
        )
    build(coreset_cfg, Selector, KEY, seed=seed)


def full_set_steps(n_full: int, train_cfg, world_size: int) -> int:
    """Optimisation steps of an unlearning run over ``n_full`` examples: ceil(N / (b * accum * world)) * epochs."""
    if train_cfg.get("max_steps"):
        return int(train_cfg.max_steps)
    per_step = train_cfg.batch_size * train_cfg.grad_accum * world_size
    return max(1, math.ceil(n_full / per_step)) * int(train_cfg.epochs)


@dataclass
class Coreset:
    rows: list[dict]  # the forget rows to unlearn with
    encoded: list[dict]  # encode(rows), each example's "index" its id in the full forget set
    train_cfg: DictConfig  # the unlearning trainer's settings (max_steps set when steps are matched)
    record: dict  # results.json's `coreset`


def select_coreset(
    coreset_cfg,
    *,
    model,
    rows: list[dict],
    encoded: list[dict],
    encode,
    pad_id: int,
    seed: int,
    precision: str,
    batch_size: int,
    train_cfg: DictConfig,
) -> Coreset:
    """Select by ``coreset_cfg`` (the ``coreset`` node) from the full forget set ``rows`` (``encoded`` = ``encode(rows)``).

    ``model`` holds theta_0, the model unlearning starts from; scoring passes run ``batch_size``
    sequences at a time in ``precision``. The returned trainer settings are ``train_cfg`` (the
    unlearning stage's) with ``max_steps`` set where steps are matched to the full-set run.
    """
    selector = build(coreset_cfg, Selector, KEY, seed=seed)
    start = time.perf_counter()
    ids = selector.select(Pool(rows, encoded, model, pad_id, batch_size, precision))
    # every rank must unlearn with the same examples: rank 0's ranking wins over kernel-level noise
    ids = from_main(ids)
    seconds = time.perf_counter() - start
    if len(ids) != len(set(ids)) or len(ids) != coreset_size(selector.ratio, len(rows)):
        raise RuntimeError(f"coreset `{selector.name}` selected {len(ids)} ids, not {len(rows)} * {selector.ratio}")

    new_rows = selector.transform(rows, ids)
    if new_rows is None:
        chosen_rows, chosen = [rows[i] for i in ids], [encoded[i] for i in ids]
    else:
        # the rewritten rows keep the ids of the examples they came from
        chosen_rows = new_rows
        chosen = [{**e, "index": i} for e, i in zip(encode(new_rows), ids, strict=True)]

    world = world_size()
    full_steps = full_set_steps(len(rows), train_cfg, world)
    run_cfg = train_cfg
    if selector.match_steps and not train_cfg.get("max_steps"):
        run_cfg = OmegaConf.merge(train_cfg, {"max_steps": full_steps})
    steps = full_set_steps(len(ids), run_cfg, world)
    log.info(
        "coreset %s: %d of %d forget examples in %.2fs; unlearning takes %d steps (full set: %d)",
        selector.name,
        len(ids),
        len(rows),
        seconds,
        steps,
        full_steps,
    )
    record = {
        "name": selector.name,
        "ratio": selector.ratio,
        "seed": selector.seed,
        "match_steps": selector.match_steps,
        "selected": ids,
        "n_selected": len(ids),
        "n_total": len(rows),
        "seconds": round(seconds, 3),
        "unlearn_steps": steps,
        "full_set_steps": full_steps,
        **selector.describe(),
    }
    if selector.scores is not None:
        record["scores"] = [round(float(s), 6) for s in selector.scores]
    if new_rows is not None:
        record["rows"] = new_rows
    return Coreset(chosen_rows, chosen, run_cfg, record)
