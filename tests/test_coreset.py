"""Coreset selectors: exact sizes, determinism, hand-checked rankings, and the matched step count end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from runner import config, coreset, job
from runner.benchmarks.base import build_benchmark
from runner.coreset import Pool, coreset_size
from runner.errors import ConfigError
from runner.scoring import mean_nll
from tests.conftest import compose_cfg, random_llama

VOCAB = 50


def _ids(text: str) -> list[int]:
    return [3 + ord(c) % (VOCAB - 3) for c in text]


def encode(rows: list[dict]) -> list[dict]:
    """A character-level stand-in for a benchmark's encode: QA rows score the answer, text rows every token."""
    out = []
    for i, r in enumerate(rows):
        if "text" in r:
            ids = _ids(r["text"])[:24]
            out.append({"input_ids": ids, "labels": list(ids), "index": i})
        else:
            q, a = _ids(r["question"])[:12], _ids(r["answer"])[:12]
            out.append({"input_ids": q + a, "labels": [-100] * len(q) + a, "index": i})
    return out


QA_ROWS = [
    {"question": f"Who wrote book {i}?", "answer": f"Author {i * 7 % 13} wrote it in {1900 + i}"} for i in range(40)
]
TEXT_ROWS = [
    {"text": f"Passage {i} about the pathogen variant {i % 5} and its assay number {i * 3}."} for i in range(40)
]


SELECTORS = {
    "random": coreset.RandomSelector,
    "loss": coreset.LossSelector,
    "gradnorm": coreset.GradNormSelector,
    "moderate": coreset.ModerateSelector,
    "keyword": coreset.KeywordSelector,
}


def _selector(name: str, ratio: float, seed: int = 0, **options):
    return SELECTORS[name](name, ratio, seed=seed, **options)


def _pool(rows, model):
    return Pool(rows, encode(rows), model, pad_id=0, batch_size=8, precision="fp32")


@pytest.fixture(scope="module")
def model():
    return random_llama()


def test_coreset_size_is_the_ceiling_without_float_noise():
    # 0.05 * 40 = 2.0000000000000004 and 0.07 * 100 = 7.000000000000001 in floating point
    assert [coreset_size(r, 40) for r in (0.01, 0.05, 0.1, 0.25, 1.0)] == [1, 2, 4, 10, 40]
    assert coreset_size(0.07, 100) == 7 and coreset_size(0.3, 10) == 3 and coreset_size(0.31, 10) == 4


def test_every_selector_config_builds_its_class():
    for name, cls in SELECTORS.items():
        selector = coreset.build_selector(compose_cfg(f"coreset={name}", "seed=3").coreset)
        assert type(selector) is cls and selector.seed == 3 and selector.match_steps is True


@pytest.mark.parametrize("name", list(SELECTORS))
@pytest.mark.parametrize("rows", [QA_ROWS, TEXT_ROWS], ids=["qa", "text"])
def test_each_selector_returns_exactly_ceil_ratio_n_distinct_ids_deterministically(name, rows, model):
    pool = _pool(rows, model)
    options = {"batch_size": 20} if name == "gradnorm" else {}
    # the scoring selectors run a model pass per call: fewer ratios for them
    ratios = (0.01, 0.05, 0.1, 0.25, 1.0) if name in ("random", "keyword") else (0.05, 0.25, 1.0)
    for ratio in ratios:
        ids = _selector(name, ratio, seed=1, **options).select(pool)
        assert len(ids) == math.ceil(round(ratio * len(rows), 9)) == len(set(ids))
        assert all(0 <= i < len(rows) for i in ids)
    first = _selector(name, 0.25, seed=1, **options).select(pool)
    assert _selector(name, 0.25, seed=1, **options).select(pool) == first  # same seed, same ids
    if name == "random":
        assert _selector(name, 0.25, seed=0).select(pool) != first


def _fitted_model():
    """A tiny model trained to fit examples 0-2 and never shown examples 3-5."""
    rng = np.random.default_rng(0)
    # six unrelated strings of letters, so fitting three says nothing about the other three
    rows = [
        {"question": f"q{i}", "answer": "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 14))} for i in range(6)
    ]
    encoded = encode(rows)
    model = random_llama()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    from runner.data.qa import collate_qa

    batch = collate_qa(encoded[:3], 0)
    for _ in range(80):
        opt.zero_grad()
        mean_nll(model, batch).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model, rows, encoded


def test_loss_and_gradnorm_rank_fitted_examples_below_unseen_ones():
    model, rows, encoded = _fitted_model()
    pool = Pool(rows, encoded, model, pad_id=0, batch_size=4, precision="fp32")
    assert _selector("loss", 0.5).select(pool) == [3, 4, 5]
    low = _selector("loss", 0.5, order="low")
    assert low.select(pool) == [0, 1, 2]
    # the recorded scores are each example's mean answer NLL, computed here one example at a time
    from runner.data.qa import collate_qa

    with torch.no_grad():
        nll = [mean_nll(model, collate_qa([e], 0)).item() for e in encoded]
    np.testing.assert_allclose(low.scores, nll, rtol=1e-5)
    assert max(nll[:3]) < 0.5 < min(nll[3:])

    grand = _selector("gradnorm", 0.5)
    assert grand.select(pool) == [3, 4, 5]  # near a minimum the fitted examples barely pull


def test_gradnorm_matches_one_backward_per_example():
    """vmap over right-padded batches gives each example the gradient norm of its own backward pass."""
    model, _, encoded = _fitted_model()
    for p in model.model.layers[0].parameters():  # a partly frozen model: norms over trainable parameters only
        p.requires_grad_(False)
    norms = coreset.per_example_grad_norms(model, encoded, pad_id=0, batch_size=4, precision="fp32")
    from runner.data.qa import collate_qa

    expected = []
    for e in encoded:
        model.zero_grad(set_to_none=True)
        mean_nll(model, collate_qa([e], 0)).backward()
        expected.append(math.sqrt(sum(p.grad.pow(2).sum().item() for p in model.parameters() if p.requires_grad)))
    np.testing.assert_allclose(norms, expected, rtol=1e-4)
    assert all(p.grad is None for p in model.model.layers[0].parameters())


def test_moderate_keeps_the_examples_at_median_distance():
    # the sixth point (-4, 1) puts the centroid at the origin: distances 1, 2, 3, 4, 5, sqrt(17);
    # median 3.5; |d - 3.5| = 2.5, 1.5, 0.5, 0.5, 1.5, 0.62
    emb = np.array([[1.0, 0], [-2, 0], [0, 3], [0, -4], [5, 0], [-4, 1]])
    order, distance = coreset.moderate_rank(emb)
    np.testing.assert_allclose(distance, [1, 2, 3, 4, 5, math.sqrt(17)])
    assert order == [2, 3, 5, 1, 4, 0]


def test_tfidf_and_keyword_selection_by_hand():
    docs = [["virus", "assay", "virus"], ["assay", "cell"], ["cell", "culture"]]
    w = coreset.tfidf(docs)
    idf = {t: math.log(4 / (1 + df)) + 1 for t, df in {"virus": 1, "assay": 2, "cell": 2, "culture": 1}.items()}
    assert w[0]["virus"] == pytest.approx(2 / 3 * idf["virus"])
    assert w[1]["cell"] == pytest.approx(1 / 2 * idf["cell"])
    # summed over documents: cell (1/2+1/2)*1.288 = 1.288, virus 2/3*1.693 = 1.129,
    # assay (1/3+1/2)*1.288 = 1.073, culture 1/2*1.693 = 0.847
    assert coreset.top_keywords(w, 2) == ["cell", "virus"]

    rows = [
        {"text": "The toxin gene toxin assay toxin."},
        {"text": "Weather was mild today in the town."},
        {"text": "A toxin gene sample."},
        {"text": "The garden had roses and tulips."},
    ]
    sel = coreset.KeywordSelector("keyword", ratio=0.5, top_k=2)
    assert sel.select(Pool(rows, encode(rows), None, 0, 4, "fp32")) == [0, 2]
    assert sel.keywords == ["toxin", "gene"]
    only = coreset.KeywordSelector("keyword", ratio=0.5, top_k=2, mode="keyword_only")
    ids = only.select(Pool(rows, encode(rows), None, 0, 4, "fp32"))
    assert only.transform(rows, ids) == [{"text": "toxin gene toxin toxin"}, {"text": "toxin gene"}]
    qa = [{"question": "Who found the toxin?", "answer": "Dr Vale found the toxin gene."}]
    kq = coreset.KeywordSelector("keyword", ratio=1.0, top_k=2, mode="keyword_only")
    kq.select(Pool(qa, encode(qa), None, 0, 4, "fp32"))
    # one document: idf 1 for all; "found" and "toxin" occur twice (question + answer), the rest once
    assert kq.keywords == ["found", "toxin"]
    assert kq.transform(qa, [0]) == [{"question": "Who found the toxin?", "answer": "found toxin"}]


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5])
def test_ratio_outside_unit_interval_is_a_clear_config_error(ratio):
    with pytest.raises(ConfigError, match=r"coreset\.ratio.*\(0, 1\]"):
        config.validate(compose_cfg("coreset=random", f"coreset.ratio={ratio}"))
    with pytest.raises(ConfigError, match="coreset.order"):
        config.validate(compose_cfg("coreset=loss", "coreset.order=middle"))
    with pytest.raises(ConfigError, match="coreset.ratio"):
        config.validate(compose_cfg("coreset.ratio=0.5"))  # coreset=none ignores a ratio: refused


def test_full_set_steps_formula():
    cfg = compose_cfg("unlearn.batch_size=4", "unlearn.grad_accum=2", "unlearn.epochs=3").unlearn
    assert coreset.full_set_steps(40, cfg, world_size=1) == 5 * 3
    assert coreset.full_set_steps(41, cfg, world_size=1) == 6 * 3
    assert coreset.full_set_steps(40, cfg, world_size=2) == 3 * 3


def test_coreset_on_a_text_benchmark_keeps_ids_and_rows_aligned(tiny_cfg):
    """WMDP's forget corpus ({"text"} rows) through its own encode; keyword-only rows are re-encoded under their ids."""
    cfg = compose_cfg(
        "experiment=wmdp_smoke_tiny", f"paths.cache_dir={tiny_cfg().paths.cache_dir}", "coreset=keyword",
        "coreset.ratio=0.5", "coreset.mode=keyword_only", "coreset.top_k=5",
    )  # fmt: skip
    from runner.data.qa import PromptFormat
    from runner.models import load_model

    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir))
    bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
    rows = bench.forget_rows
    chosen = coreset.select_coreset(cfg, model, rows, bench.encode(rows), bench.encode, tokenizer.pad_token_id)
    ids = chosen.record["selected"]
    assert len(ids) == math.ceil(len(rows) / 2) and [e["index"] for e in chosen.encoded] == ids
    assert chosen.encoded[0]["input_ids"] == bench.encode([chosen.rows[0]])[0]["input_ids"]
    assert all(set(r["text"].split()) <= set(chosen.record["keywords"]) for r in chosen.rows)
    # steps: ceil(8 / 4) * 2 epochs for the full corpus subset, matched by the coreset run
    assert chosen.train_cfg.max_steps == chosen.record["full_set_steps"] == math.ceil(len(rows) / 4) * 2


def test_matched_steps_equal_the_full_runs_steps_end_to_end(tiny_cfg, tmp_path):
    """Full-set GA and a 25% coreset with match_steps: the trainers take the same number of steps.

    The coreset run also carries an SST-2 LoRA attack (fixtures), so one job shows coreset and attack records.
    """
    # seed 11: jobs of their own, never an identical finished job of another test file from the shared cache
    full = job.run(tiny_cfg("method=ga", "seed=11"), tmp_path / "full")
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
