"""The coreset stage: coreset=none is a null node, the selection's record, and the matched step count end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from runner import job, job_kinds
from runner.benchmarks.base import build_benchmark
from runner.coreset.stage import full_set_steps, select_coreset
from runner.data.qa import PromptFormat
from runner.errors import ConfigError
from runner.models import load_model
from tests.conftest import compose_cfg


def test_none_is_a_null_node():
    assert compose_cfg().coreset is None  # the default: the whole forget set
    assert compose_cfg("coreset=none").coreset is None
    assert compose_cfg("coreset=random", "coreset=none").coreset is None
    assert compose_cfg("~coreset").get("coreset") is None  # Hydra's way of saying "no coreset" works too
    job_kinds.validate(compose_cfg("coreset=none"))


def test_a_ratio_without_a_selector_is_refused():
    # Hydra itself refuses to set a key of the null node ...
    with pytest.raises(ConfigCompositionException, match="coreset.ratio"):
        compose_cfg("coreset.ratio=0.5")
    # ... and a ratio laid over coreset=none another way (an experiment's coreset block) is refused at validation
    for overrides in (["+coreset.ratio=0.5"], ["experiment=coreset_tofu_npo", "coreset=none"]):
        with pytest.raises(ConfigError, match=r"coreset\.ratio.*whole forget set"):
            job_kinds.validate(compose_cfg(*overrides))


def test_coreset_ratio_without_a_selector_stops_the_job(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="coreset.ratio"):
        job.run(tiny_cfg("+coreset.ratio=0.05"), tmp_path)
    assert not (tmp_path / "unlearn").exists()  # stopped before any stage


def test_full_set_steps_formula():
    cfg = compose_cfg("unlearn.batch_size=4", "unlearn.grad_accum=2", "unlearn.epochs=3").unlearn
    assert full_set_steps(40, cfg, world_size=1) == 5 * 3
    assert full_set_steps(41, cfg, world_size=1) == 6 * 3
    assert full_set_steps(40, cfg, world_size=2) == 3 * 3


def test_coreset_on_a_text_benchmark_keeps_ids_and_rows_aligned(tiny_cfg):
    """WMDP's forget corpus ({"text"} rows) through its own encode; keyword-only rows are re-encoded under their ids."""
    cfg = compose_cfg(
        "experiment=wmdp_smoke_tiny", f"paths.cache_dir={tiny_cfg().paths.cache_dir}", "coreset=keyword",
        "coreset.ratio=0.5", "coreset.mode=keyword_only", "coreset.top_k=5", "seed=4",
    )  # fmt: skip
    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir))
    bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
    rows = bench.forget_rows
    chosen = select_coreset(
        cfg.coreset,
        model=model,
        rows=rows,
        encoded=bench.encode(rows),
        encode=bench.encode,
        pad_id=tokenizer.pad_token_id,
        seed=cfg.seed,
        precision="fp32",
        batch_size=cfg.eval.batch_size,
        train_cfg=cfg.unlearn,
    )
    ids = chosen.record["selected"]
    assert len(ids) == math.ceil(len(rows) / 2) and [e["index"] for e in chosen.encoded] == ids
    assert chosen.encoded[0]["input_ids"] == bench.encode([chosen.rows[0]])[0]["input_ids"]
    assert all(set(r["text"].split()) <= set(chosen.record["keywords"]) for r in chosen.rows)
    assert chosen.record["rows"] == chosen.rows and chosen.record["seed"] == 4 and chosen.record["name"] == "keyword"
    # steps: ceil(8 / 4) * 2 epochs for the full corpus subset, matched by the coreset run
    assert chosen.train_cfg.max_steps == chosen.record["full_set_steps"] == math.ceil(len(rows) / 4) * 2


def test_matched_steps_equal_the_full_runs_steps_end_to_end(tiny_cfg, tmp_path):
    """Full-set GA and a 25% coreset with match_steps: the trainers take the same number of steps.

    The coreset run also carries an SST-2 LoRA attack (fixtures), so one job shows coreset and attack records.
    """
    # seed 11: jobs of their own, never an identical finished job of another test file from the shared cache
    full = job.run(tiny_cfg("method=ga", "seed=11"), tmp_path / "full")
    assert "coreset" not in full and "coreset" not in full["timings"]  # coreset=none: no stage, no record
    core = job.run(
        tiny_cfg(
            "method=ga", "seed=11", "coreset=random", "coreset.ratio=0.25", "finetune_attack=sst2",
            "finetune_attack.source=tests/fixtures/hub", "finetune_attack.tuning=lora", "finetune_attack.examples=16",
            "finetune_attack.eval_examples=8", "finetune_attack.train.max_steps=4",
            "finetune_attack.train.learning_rate=1e-3",
        ),
        tmp_path / "core",
    )  # fmt: skip
    n_full = len(full["per_example"]["unlearned"]["forget"]["prob"])
    rec = core["coreset"]
    assert rec["n_total"] == n_full == 8 and rec["n_selected"] == 2 == len(set(rec["selected"]))
    assert rec["seed"] == 11  # the job's seed draws the sample
    assert core["training"]["unlearn"]["steps"] == full["training"]["unlearn"]["steps"] == rec["unlearn_steps"]
    assert full["training"]["unlearn"]["steps"] == math.ceil(8 / 4) * 6  # tofu_smoke_tiny: batch 4, 6 epochs

    no_match = job.run(
        tiny_cfg("method=ga", "seed=11", "coreset=random", "coreset.ratio=0.25", "coreset.match_steps=false"),
        tmp_path / "nm",
    )
    assert no_match["training"]["unlearn"]["steps"] == math.ceil(2 / 4) * 6

    attack = core["attack"]
    assert attack["name"] == "sst2" and attack["task_metric"] == "sst2_accuracy" and attack["tuning"] == "lora"
    assert attack["training"]["steps"] == 4
    for value in (attack["task_before"], attack["task_after"]):
        assert value * 8 == pytest.approx(round(value * 8))  # a fraction of the 8 validation rows
    assert list(core["metrics"]) == ["target", "retain", "unlearned", "attacked"]
    assert core["metrics"]["attacked"] != core["metrics"]["unlearned"]
