"""The selectors of conf/coreset: exact sizes, determinism and hand-checked rankings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from runner import job_kinds
from runner.components import build
from runner.coreset import selectors
from runner.coreset.base import Pool, Selector
from runner.data.qa import collate_qa
from runner.errors import ConfigError
from runner.scoring import mean_nll
from tests.conftest import compose_cfg, random_llama
from tests.coreset.rows import QA_ROWS, TEXT_ROWS, encode, fitted_model

SELECTORS = {
    name: getattr(selectors, f"{cls}Selector")
    for name, cls in (("random", "Random"), ("loss", "Loss"), ("gradnorm", "GradNorm"), ("moderate", "Moderate"))
} | {"keyword": selectors.KeywordSelector}


def _selector(name: str, ratio: float, seed: int = 0, **options):
    return SELECTORS[name](name, ratio, seed=seed, **options)


@pytest.fixture(scope="module")
def model():
    return random_llama()


def test_every_selector_config_builds_its_class_with_the_job_seed():
    for name, cls in SELECTORS.items():
        cfg = compose_cfg(f"coreset={name}", "seed=3")
        selector = build(cfg.coreset, Selector, "coreset", seed=cfg.seed)
        assert type(selector) is cls and selector.seed == 3 and selector.match_steps is True
        assert selector.name == name and selector.ratio == 0.05
        assert "seed" not in cfg.coreset  # one way in: the job's seed, passed by the stage


@pytest.mark.parametrize("name", list(SELECTORS))
@pytest.mark.parametrize("rows", [QA_ROWS, TEXT_ROWS], ids=["qa", "text"])
def test_each_selector_returns_exactly_ceil_ratio_n_distinct_ids_deterministically(name, rows, model):
    pool = Pool(rows, encode(rows), model, pad_id=0, batch_size=8, precision="fp32")
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


def test_loss_and_gradnorm_rank_fitted_examples_below_unseen_ones():
    model, rows, encoded = fitted_model()
    pool = Pool(rows, encoded, model, pad_id=0, batch_size=4, precision="fp32")
    assert _selector("loss", 0.5).select(pool) == [3, 4, 5]
    low = _selector("loss", 0.5, order="low")
    assert low.select(pool) == [0, 1, 2] and low.describe() == {"order": "low"}
    # the recorded scores are each example's mean answer NLL, computed here one example at a time
    with torch.no_grad():
        nll = [mean_nll(model, collate_qa([e], 0)).item() for e in encoded]
    np.testing.assert_allclose(low.scores, nll, rtol=1e-5)
    assert max(nll[:3]) < 0.5 < min(nll[3:])

    grand = _selector("gradnorm", 0.5)
    assert grand.select(pool) == [3, 4, 5]  # near a minimum the fitted examples barely pull


def test_moderate_keeps_the_examples_at_median_distance():
    # the sixth point (-4, 1) puts the centroid at the origin: distances 1, 2, 3, 4, 5, sqrt(17);
    # median 3.5; |d - 3.5| = 2.5, 1.5, 0.5, 0.5, 1.5, 0.62
    emb = np.array([[1.0, 0], [-2, 0], [0, 3], [0, -4], [5, 0], [-4, 1]])
    order, distance = selectors.moderate_rank(emb)
    np.testing.assert_allclose(distance, [1, 2, 3, 4, 5, math.sqrt(17)])
    assert order == [2, 3, 5, 1, 4, 0]


def test_keyword_selection_by_hand():
    rows = [
        {"text": "The toxin gene toxin assay toxin."},
        {"text": "Weather was mild today in the town."},
        {"text": "A toxin gene sample."},
        {"text": "The garden had roses and tulips."},
    ]
    sel = selectors.KeywordSelector("keyword", ratio=0.5, top_k=2)
    assert sel.select(Pool(rows, encode(rows), None, 0, 4, "fp32")) == [0, 2]
    assert sel.keywords == ["toxin", "gene"] and sel.transform(rows, [0, 2]) is None
    only = selectors.KeywordSelector("keyword", ratio=0.5, top_k=2, mode="keyword_only")
    ids = only.select(Pool(rows, encode(rows), None, 0, 4, "fp32"))
    assert only.transform(rows, ids) == [{"text": "toxin gene toxin toxin"}, {"text": "toxin gene"}]
    qa = [{"question": "Who found the toxin?", "answer": "Dr Vale found the toxin gene."}]
    kq = selectors.KeywordSelector("keyword", ratio=1.0, top_k=2, mode="keyword_only")
    kq.select(Pool(qa, encode(qa), None, 0, 4, "fp32"))
    # one document: idf 1 for all; "found" and "toxin" occur twice (question + answer), the rest once
    assert kq.keywords == ["found", "toxin"]
    assert kq.transform(qa, [0]) == [{"question": "Who found the toxin?", "answer": "found toxin"}]
    assert kq.describe() == {"mode": "keyword_only", "keywords": ["found", "toxin"]}


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["coreset=random", "coreset.ratio=0"], r"coreset\.ratio.*\(0, 1\]"),
        (["coreset=random", "coreset.ratio=-0.1"], r"coreset\.ratio.*\(0, 1\]"),
        (["coreset=random", "coreset.ratio=1.5"], r"coreset\.ratio.*\(0, 1\]"),
        (["coreset=loss", "coreset.order=middle"], "coreset.order"),
        (["coreset=gradnorm", "coreset.batch_size=0"], "coreset.batch_size"),
        (["coreset=keyword", "coreset.mode=sparse"], "coreset.mode"),
        (["coreset=keyword", "coreset.top_k=0"], "coreset.top_k"),
        (["coreset=random", "+coreset.colour=red"], "colour"),  # an unknown option
    ],
)
def test_bad_selector_options_are_clear_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        job_kinds.validate(compose_cfg(*overrides))
