"""Retain logs (runner/retain_logs.py): open-unlearning's TOFU_EVAL.json / MUSE_EVAL.json and this runner's records.

The open-unlearning files are written here by hand from the keys its evaluator writes
(src/evals/metrics/privacy.py reads ``forget_truth_ratio.value_by_index.<i>.score`` and
``mia_min_k.agg_value`` of the retain model's log).
"""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from runner.errors import ConfigError
from runner.retain_logs import read_retain_logs

TOFU = OmegaConf.create({"name": "tofu", "forget_split": "forget01", "subset": {"forget": None}})
TOFU_SUBSET = OmegaConf.create({"name": "tofu", "forget_split": "forget01", "subset": {"forget": 8}})
MUSE = OmegaConf.create({"name": "muse"})


def ou_tofu_log(ratios: list[float], auc: float = 0.38) -> dict:
    """A TOFU_EVAL.json as open-unlearning writes it (the parts a retain log is read for, and a few others)."""
    return {
        "forget_quality": {"agg_value": None},
        "forget_truth_ratio": {
            "agg_value": 0.61,
            "value_by_index": {str(i): {"score": r} for i, r in enumerate(ratios)},
        },
        "forget_Q_A_Prob": {"agg_value": 0.12, "value_by_index": {"0": {"prob": 0.1, "avg_loss": 2.3}}},
        "mia_min_k": {
            "agg_value": auc,
            "auc": auc,
            "forget": {"value_by_index": {"0": {"score": 1.5}}},
            "holdout": {"value_by_index": {"0": {"score": 1.4}}},
        },
        "model_utility": {"agg_value": 0.59},
        "privleak": {"agg_value": 0.0},
    }


def write(tmp_path, obj, name="TOFU_EVAL.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return str(path)


def test_open_unlearning_tofu_log_gives_truth_ratios_in_row_order_and_min_k_auc(tmp_path):
    ratios = [0.5 + i / 100 for i in range(40)]
    log = ou_tofu_log(ratios)
    # open-unlearning's keys are strings; row 10 must come after row 9, not after row 1
    log["forget_truth_ratio"]["value_by_index"] = dict(
        reversed(list(log["forget_truth_ratio"]["value_by_index"].items()))
    )
    got = read_retain_logs(write(tmp_path, log), TOFU)
    assert got.format == "open-unlearning" and got.forget_truth_ratio == ratios
    assert got.min_k_auc == 0.38 and got.muse_auc() == pytest.approx(0.62)
    # shaped as a retain model's evaluation, for summarize's baselines
    assert got.baseline() == {"suites": {"mia": {"min_k": 0.38}}, "per_example": {"forget": {"truth_ratio": ratios}}}
    # a subset evaluates the first rows: the log's first rows are its reference
    assert read_retain_logs(write(tmp_path, log), TOFU_SUBSET).forget_truth_ratio == ratios[:8]


def test_open_unlearning_muse_log_gives_the_auc_in_muse_orientation(tmp_path):
    log = {"forget_verbmem_ROUGE": {"agg_value": 0.2}, "mia_min_k": {"agg_value": 0.5225}, "privleak": {"agg_value": 0}}
    got = read_retain_logs(write(tmp_path, log, "MUSE_EVAL.json"), MUSE)
    assert got.forget_truth_ratio is None and got.muse_auc() == pytest.approx(1 - 0.5225)


def test_runner_records_and_cached_evaluations_are_read(tmp_path):
    ratios = [1.0 + i for i in range(8)]
    record = {
        "status": "completed",
        "config": {"benchmark": {"name": "tofu", "forget_split": "forget01"}},
        "metrics": {"retain": {}},
        "evaluation": {"target": {}, "retain": {"forget": {}, "mia": {"min_k": 0.55}}},
        "per_example": {
            "target": {"forget": {"truth_ratio": [9.0] * 8}},
            "retain": {"forget": {"truth_ratio": ratios}},
        },
    }
    got = read_retain_logs(write(tmp_path, record, "results.json"), TOFU_SUBSET)
    assert got.format == "runner" and got.forget_truth_ratio == ratios  # the retain row, not the target's
    assert got.min_k_auc == 0.55  # TOFU's membership-inference suite, same orientation as open-unlearning's
    cached = {"suites": {"privleak": {"auc": 0.3}}, "per_example": {}}
    assert read_retain_logs(write(tmp_path, cached, "eval.json"), MUSE).muse_auc() == pytest.approx(0.3)


@pytest.mark.parametrize(
    "content, bench, problem",
    [
        ("{not json", TOFU, "not readable as JSON"),
        ("[1, 2]", TOFU, "holds a JSON list"),
        (ou_tofu_log([0.5] * 400), TOFU, "holds 400 truth ratios but forget01 needs 40"),
        (ou_tofu_log([0.5] * 40), OmegaConf.merge(TOFU, {"forget_split": "forget05"}), "needs 200"),
        ({"mia_min_k": {"agg_value": 0.4}}, TOFU, "no `forget_truth_ratio.value_by_index`"),
        (ou_tofu_log([0.5] * 39 + [-1.0]), TOFU, "row 39 is -1.0, not a truth ratio"),
        (ou_tofu_log([0.5] * 40, auc=1.5), TOFU, "mia_min_k.agg_value is 1.5, not an AUC"),
        (ou_tofu_log([0.5] * 40), MUSE, "is an open-unlearning TOFU log"),
        ({"forget_verbmem_ROUGE": {}, "mia_min_k": {"agg_value": 0.5}}, TOFU, "is an open-unlearning MUSE log"),
        ({"forget_verbmem_ROUGE": {"agg_value": 0.1}}, MUSE, "no `mia_min_k.agg_value`"),
        (
            {
                "metrics": {},
                "config": {"benchmark": {"name": "tofu", "forget_split": "forget05"}},
                "evaluation": {"retain": {}},
            },
            TOFU,
            "record of forget split forget05",
        ),
        ({"metrics": {}, "evaluation": {"unlearned": {}}}, TOFU, "without a `retain` or `evaluated` row"),
    ],
)
def test_malformed_or_foreign_logs_fail_naming_the_key(tmp_path, content, bench, problem):
    with pytest.raises(ConfigError, match=r"`benchmark.retain_logs`") as err:
        read_retain_logs(write(tmp_path, content), bench)
    assert problem in str(err.value)


def test_a_missing_log_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"`benchmark.retain_logs`: .*nope.json: no such file"):
        read_retain_logs(str(tmp_path / "nope.json"), TOFU)


def test_muse_privleak_uses_the_logged_retain_auc_and_builds_no_retain_model(muse_offline, tmp_path):

    # open-unlearning's retain AUC 0.6 is MUSE's 0.4 (the other orientation)
    log = write(
        tmp_path, {"forget_knowmem_ROUGE": {"agg_value": 0.3}, "mia_min_k": {"agg_value": 0.6}}, "MUSE_EVAL.json"
    )
    bench = muse_offline(f"benchmark.retain_logs={log}")
    assert list(bench.finetuned_models) == ["target"]  # the log stands in for the retain model
    suites = {
        "verbmem_forget": {"rouge_l_f1": 0},
        "knowmem_forget": {"rouge_l_f1": 0},
        "knowmem_retain": {"rouge_l_f1": 0},
    }
    got = bench.summarize({"suites": {**suites, "privleak": {"auc": 0.1}}}, {})
    assert got["privleak"] == pytest.approx((0.1 - 0.4) / 0.4 * 100)  # -75
    # without a retain model, build_references=false takes the log instead of privleak.retrain_auc
    bench = muse_offline("benchmark.build_references=false", f"benchmark.retain_logs={log}")
    assert bench.finetuned_models == {}
    assert bench.summarize({"suites": {**suites, "privleak": {"auc": 0.5}}}, {})["privleak"] == pytest.approx(25.0)
