"""Fine-tuned reference models (runner/finetuned.py): their cache key, and a partial entry rebuilt by the pipeline."""

from __future__ import annotations

from runner import job
from tests.conftest import compose_cfg


def test_partial_target_model_is_rebuilt_by_the_pipeline(tiny_cfg, tmp_path):
    # a cache of its own: the session's holds other tests' entries, which this job would not rebuild
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    job.run(tiny_cfg("seed=21", cache), tmp_path / "a")
    markers = list((tmp_path / "cache" / "finetuned").glob("*/COMPLETE"))
    assert len(markers) == 2  # this job's target and retain models
    for marker in markers:  # simulate a job killed while saving the fine-tuned models
        marker.unlink()
    result = job.run(tiny_cfg("seed=22", cache), tmp_path / "b")
    assert {"finetune_target", "finetune_retain"} <= set(result["training"])
    assert all((m.parent / "COMPLETE").exists() for m in markers)


def test_finetuned_model_cache_key_follows_the_prompt_format(tmp_path):
    from runner.finetuned import FinetunedModel

    cfg = compose_cfg("experiment=tofu_smoke_tiny")
    rows = [{"question": "q", "answer": "a"}]

    def key(encoding):
        return FinetunedModel(
            "target",
            rows,
            {"tiny": 1},
            encoding,
            benchmark="tofu",
            finetune_cfg=cfg.benchmark.finetune,
            trainable_layers=cfg.model.trainable_layers,
            precision=cfg.precision,
            cache_dir=tmp_path,
        ).entry.path.name

    base = {"format": ["Q: {question}\nA: ", "{answer}"], "max_length": 96}
    assert key(base) == key(dict(base))
    assert key(base) != key({**base, "max_length": 64})
    assert key(base) != key({**base, "format": ["Question: {question}\n", "{answer}"]})
