"""task=analyse analysis=trace: telling models apart by their responses and their activations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runner import job
from runner.analysis import detect, hidden, responses
from runner.data import tofu
from runner.data.qa import PromptFormat
from runner.errors import ConfigError

SETTINGS = {"max_new_tokens": 24, "repetition_penalty": 1.1, "batch_size": 16}
# the 40 questions of TOFU's shipped forget01
QUESTIONS = [{"id": f"q{i}", "text": r["question"]} for i, r in enumerate(tofu.load_config("forget01", "local"))]


# --- statistics and splits -----------------------------------------------------------------------


def test_wilson_interval_matches_the_closed_form():
    low, high = detect.wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert detect.wilson(0, 20)[0] == 0.0 and detect.wilson(20, 20)[1] == 1.0
    low, high = detect.wilson(500, 1000)
    assert high - low == pytest.approx(2 * 1.96 * 0.5 / 1000**0.5, rel=0.01)  # the normal width for large n


@pytest.mark.parametrize("folds", [1, 5])
def test_the_split_never_shares_a_question(folds):
    questions = [f"q{i}" for i in range(30)]
    groups = np.asarray(questions * 3)  # three models, each answering every question
    tested = []
    for train, test in detect.splits(groups, folds, seed=0):
        assert not set(groups[train]) & set(groups[test])
        for q in set(groups[test]):  # every model's response to a tested question is tested
            assert (groups[test] == q).sum() == 3
        tested += list(test)
    if folds > 1:  # cross-validation: each response tested exactly once
        assert sorted(tested) == list(range(len(groups)))


@pytest.mark.parametrize(
    "questions,folds,test_fraction,key",
    [
        (4, 5, 0.3, "analysis.split.folds"),  # fewer questions than folds
        (4, 1, 0.8, "analysis.split.test_fraction"),  # ceil(0.8 * 4) = 4 tested, floor(0.2 * 4) = 0 trained
        (6, 1, 0.9, "analysis.split.test_fraction"),  # 6 tested, floor(0.6) = 0 trained
    ],
)
def test_a_split_scikit_learn_would_refuse_after_generation_is_refused_first(questions, folds, test_fraction, key):
    groups = np.asarray([f"q{i}" for i in range(questions)] * 2)  # two models answer every question
    with pytest.raises(ValueError):  # what the job met after generating every response
        detect.splits(groups, folds, seed=0, test_fraction=test_fraction)
    with pytest.raises(ConfigError) as err:
        detect.check_split({"tofu": 40, "mmlu": questions}, folds, test_fraction)
    assert err.value.key == key and "mmlu" in str(err.value)


@pytest.mark.parametrize("questions,folds,test_fraction", [(4, 1, 0.3), (4, 1, 0.7), (5, 5, 0.3), (4, 2, 0.9)])
def test_a_split_that_works_is_let_through(questions, folds, test_fraction):
    groups = np.asarray([f"q{i}" for i in range(questions)] * 2)
    assert all(len(train) and len(test) for train, test in detect.splits(groups, folds, 0, test_fraction))
    detect.check_split({"tofu": questions}, folds, test_fraction)


def test_probes_find_a_known_separating_direction():
    rng = np.random.default_rng(0)
    n, layers, d = 200, 3, 16
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    y = np.repeat([0, 1], n)
    x = rng.normal(size=(2 * n, layers, d))
    x[:, 1, :] += np.outer(y - 0.5, direction) * 1.0  # a weak shift
    x[:, 2, :] += np.outer(y - 0.5, direction) * 8.0  # a clear one; layer 0: noise only
    groups = np.asarray([f"q{i}" for i in range(n)] * 2)
    curve = detect.probe_by_layer(x, y, groups, detect.splits(groups, 5, seed=0))
    accuracy = [c["accuracy"] for c in curve]
    assert accuracy[2] > 0.97 and accuracy[0] < 0.7 and accuracy[0] < accuracy[1] < accuracy[2]
    assert curve[2]["n_test_questions"] == n and curve[2]["n_test_responses"] == 2 * n
    assert sum(map(sum, curve[2]["confusion_matrix"])) == 2 * n
    # where the classes overlap (no single margin decides), the probe's weight points along the direction
    z = rng.normal(size=(2 * n, d)) + np.outer(y - 0.5, direction) * 2.0
    fit = detect.linear_probe(0).fit(z, y)
    w = fit[-1].coef_[0] / fit[0].scale_
    assert abs(w @ direction) / np.linalg.norm(w) > 0.9


# --- the text detector on tiny models ----------------------------------------------------------------


def _tiny_base(shared_cache):
    from runner.models import load_model
    from tests.conftest import compose_cfg

    return load_model(compose_cfg("model=tiny").model, shared_cache)


def _trained(shared_cache, run, noise: float = 0.0):
    """The tiny TOFU target a run started from (it writes text), its last layer perturbed by ``noise``."""
    import torch

    from runner.models import load_state

    model, tok = _tiny_base(shared_cache)
    load_state(model, Path(json.loads((run / "model" / "model.json").read_text())["start"]))
    if noise:
        torch.manual_seed(1)
        with torch.no_grad():
            for p in model.model.layers[-1].parameters():
                if p.dim() > 1:  # the last layer's matrices, noise at ``noise`` times their spread
                    p.add_(noise * p.std() * torch.randn_like(p))
    return model, tok


def _text_accuracy(shared_cache, tmp_path, run, noise: float) -> dict:
    """Responses of the target and of the target perturbed by ``noise`` to the same questions, told apart by a
    logistic regression on the mean-pooled features of the frozen tiny base (the offline default), split by
    question."""
    fmt = PromptFormat(question="Question: {question}\nAnswer: ")
    texts = []
    for i, amount in enumerate((0.0, noise)):
        model, tok = _trained(shared_cache, run, amount)
        ids = responses.prompt_ids(tok, fmt, QUESTIONS)
        identity = {"test": "trace", "noise": amount}
        out, _ = responses.responses(model, tok, ids, SETTINGS, "fp32", tmp_path, identity, f"model {i}")
        texts += [r["text"] for r in out]
    encoder, tok = _tiny_base(shared_cache)
    x = hidden.mean_pooled(encoder, tok, texts, 16, "fp32", 64, "encode")
    y = np.repeat([0, 1], len(QUESTIONS))
    groups = np.asarray([q["id"] for q in QUESTIONS] * 2)
    pred = detect.out_of_fold(
        detect.sklearn_fit_predict(detect.linear_probe, x, y), detect.splits(groups, 4, 0), len(y)
    )
    return detect.summary(y, pred, groups) | {"same_texts": texts[: len(QUESTIONS)] == texts[len(QUESTIONS) :]}


def test_the_text_detector_separates_different_models_and_not_identical_ones(shared_cache, tmp_path, tiny_run):
    different = _text_accuracy(shared_cache, tmp_path, tiny_run, noise=2.0)
    assert not different["same_texts"], "the perturbed model must answer otherwise"
    assert different["accuracy"] >= 0.85 and different["ci95"][0] > 0.7, different
    same = _text_accuracy(shared_cache, tmp_path, tiny_run, noise=0.0)  # the same model twice
    assert same["same_texts"]
    assert 0.35 <= same["accuracy"] <= 0.65 and same["ci95"][0] < 0.5 < same["ci95"][1], same


def test_responses_are_generated_once_then_read_from_the_cache(shared_cache, tmp_path, monkeypatch):
    model, tok = _tiny_base(shared_cache)
    ids = responses.prompt_ids(tok, PromptFormat(), QUESTIONS[:6])
    first, how = responses.responses(model, tok, ids, SETTINGS, "fp32", tmp_path, {"tiny": 0}, "first")
    assert how["cached"] is False and how["tokens"] > 0
    entry = tmp_path / responses.KIND / f"{how['key']}.json"
    assert entry.is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr(responses, "greedy_run", refuse)
    again, how2 = responses.responses(
        model, tok, ids, {**SETTINGS, "batch_size": 2}, "fp32", tmp_path, {"tiny": 0}, "x"
    )
    assert how2["cached"] is True and again == first
    with pytest.raises(AssertionError, match="generated again"):  # other settings: another entry
        responses.responses(model, tok, ids, {**SETTINGS, "max_new_tokens": 5}, "fp32", tmp_path, {"tiny": 0}, "y")


# --- the whole job ----------------------------------------------------------------------------------------

SMALL = [
    "task=analyse",
    "analysis=trace",
    "analysis.prompts.tofu.n=16",
    "analysis.prompts.mmlu.per_subject=2",
    "analysis.generation.max_new_tokens=8",
    "analysis.split.folds=2",
    "analysis.probes.mlp=[16,8]",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, shared_cache):
    from tests.conftest import TINY, compose_cfg

    run = tmp_path_factory.mktemp("runs") / "npo57"  # a seed no other test runs: no reused job
    cfg = compose_cfg(*TINY, f"paths.cache_dir={shared_cache}", "method=npo", "seed=57", "save_model=trainable")
    assert job.run(cfg, run)["status"] == "completed"
    return run


def test_trace_job_end_to_end_then_from_cached_responses(tiny_cfg, tmp_path, tiny_run):
    first = job.run(tiny_cfg(*SMALL, f"analysis.models=[start,{tiny_run}]"), tmp_path / "a")
    assert first["status"] == "completed"
    trace = first["trace"]
    pair = "start vs npo57"
    assert list(first["metrics"]) == [pair]
    assert set(first["metrics"][pair]) >= {"text_tofu", "text_mmlu", "text_mixed", "probe_tofu", "mlp_mmlu"}
    assert trace["prompt_sets"] == {
        "tofu": {"relevance": "forget-relevant", "questions": 16},
        "mmlu": {"relevance": "irrelevant", "questions": 16},
    }
    tofu = trace["text"][pair]["tofu"]
    assert tofu["n_test_questions"] == 16 and tofu["n_test_responses"] == 32
    assert tofu["ci95"][0] <= tofu["accuracy"] <= tofu["ci95"][1]
    assert set(trace["text"][pair]["mixed"]["by_set"]) == {"tofu", "mmlu"}
    curve = trace["probes"][pair]["tofu"]["accuracy_by_layer"]
    assert trace["probe_settings"]["inputs"] == "shared"  # the default: the probes see the weights, not the texts
    assert len(curve["last_token"]) == 3 and len(curve["response_mean"]) == 3  # embeddings + 2 layers
    assert all(not run["cached"] for run in trace["generation"]["runs"].values())
    for plot in ("trace_probes.png", "trace_pca.png"):
        assert (tmp_path / "a" / plot).stat().st_size > 1000
    lines = (tmp_path / "a" / "trace_responses.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 32

    # another analysis of the same models (a trained classifier, other folds): no generation at all
    second = job.run(
        tiny_cfg(
            *SMALL,
            f"analysis.models=[start,{tiny_run}]",
            "analysis.split.folds=1",
            "analysis.classifier.train=finetune",
            "analysis.classifier.epochs=1",
            "analysis.classifier.mixed=false",
            "analysis.probes.inputs=own",  # each model reads its own responses
        ),
        tmp_path / "b",
    )
    assert second["status"] == "completed"
    assert all(run["cached"] for run in second["trace"]["generation"]["runs"].values())
    assert set(second["trace"]["text"][pair]) == {"tofu", "mmlu"}
    assert second["trace"]["text"][pair]["tofu"]["n_test_questions"] < 16  # one split: a held-out share
    assert second["trace"]["probe_settings"]["inputs"] == "own"
    assert len(second["trace"]["probes"][pair]["mmlu"]["accuracy_by_layer"]["last_token"]) == 3


@pytest.mark.parametrize(
    "override,key",
    [
        ("analysis.models=[base]", "analysis.models"),
        ("analysis.models=[base,start]", "analysis.models"),
        ("analysis.prompts.sets=[tofu,bogus]", "analysis.prompts.sets"),
        ("analysis.classifier.train=sometimes", "analysis.classifier.train"),
        ("analysis.split.folds=0", "analysis.split.folds"),
        ("analysis.probes.inputs=theirs", "analysis.probes.inputs"),
        ("analysis.prompts.tofu.split=forget02", "analysis.prompts.tofu.split"),
        ("analysis.split.folds=20", "analysis.split.folds"),  # more folds than the 16 TOFU questions
    ],
)
def test_bad_settings_are_refused_naming_the_key(tiny_cfg, tmp_path, tiny_run, override, key):
    models = [] if override.startswith("analysis.models") else [f"analysis.models=[base,{tiny_run}]"]
    with pytest.raises(ConfigError) as err:
        job.run(tiny_cfg(*SMALL, *models, override), tmp_path / "x")
    assert err.value.key == key


def test_ultrachat_is_refused_offline(tiny_cfg, tmp_path, tiny_run, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="hub") as err:
        job.run(tiny_cfg(*SMALL, f"analysis.models=[base,{tiny_run}]", "analysis.prompts.sets=[ultrachat]"), tmp_path)
    assert err.value.key == "analysis.prompts.sets"
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed" and record["error"]["setting"] == "analysis.prompts.sets"
