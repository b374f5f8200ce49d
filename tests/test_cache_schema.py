"""Cache entries with the right shape but the wrong content are corrupt: set aside, rebuilt, logged once;
a record is ``completed`` only with every metric a finite number or an explained null, and a finished
job is reused only when its record passes the same check (runner/cache_schema.py, runner/output/record_check.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import math

import pytest

from runner import cache, job
from runner.benchmarks.tofu import TofuBenchmark
from runner.cache_schema import evaluation_check
from runner.errors import InvalidResult
from runner.finetuned import cached_json
from runner.output.record import RunRecord
from runner.output.record_check import metric_problems

# a TOFU evaluation as the benchmark writes it (two rows per suite), for the cases to damage
GOOD_EVALUATION = {
    "suites": {
        "forget": {"prob": 0.5, "rouge": 0.25, "truth_ratio": 0.75},
        "retain": {"prob": 0.625, "rouge": 0.5, "truth_ratio": 0.5},
    },
    "per_example": {"forget": {"truth_ratio": [0.5, 1.0], "generation": ["a", "b"]}},
    "model_utility": 0.4,
}


@pytest.fixture(scope="module")
def tofu_summarize(tiny_tokenizer, shared_cache):
    """TOFU's summarize, bound to a real (tiny) benchmark: what the job's evaluation check calls."""
    from tests.conftest import build_offline

    return build_offline(TofuBenchmark, tiny_tokenizer, shared_cache, "tofu_smoke_tiny").summarize


def _damaged(path: list, value) -> dict:
    evaluation = json.loads(json.dumps(GOOD_EVALUATION))
    node = evaluation
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return evaluation


# ---- metrics: the gate before `completed` -------------------------------------------------------------


def test_finite_numbers_and_explained_nulls_pass_everything_else_is_named():
    metrics = {"target": {"prob": 0.5, "n": 3, "none": None}, "unlearned": {"prob": 0.25}}
    assert metric_problems(metrics, {"target.none": "no judge configured"}) == []
    assert metric_problems(metrics) == ["metrics.target.none is null with no reason recorded"]
    bad = {"u": {"a": "abc", "b": math.nan, "c": math.inf, "d": [1.0], "e": True}}
    assert metric_problems(bad) == [
        "metrics.u.a is 'abc' (str), not a number",
        "metrics.u.b is nan, not a finite number",
        "metrics.u.c is inf, not a finite number",
        "metrics.u.d is [1.0] (list), not a number",
        "metrics.u.e is True (bool), not a number",
    ]


@pytest.mark.parametrize("value", ["abc", None, math.nan, -math.inf, [0.5], {"x": "0.5"}])
def test_a_record_with_a_metric_that_is_not_a_number_is_not_completed(tmp_path, value):
    record = RunRecord(tmp_path, "key", {})
    record.data["metrics"] = {"target": {"forget_prob": 0.5}, "unlearned": {"forget_prob": value}}
    with pytest.raises(InvalidResult, match="metrics.unlearned.forget_prob"):
        record.finish("completed")
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "running"


def test_a_null_metric_with_its_reason_is_completed(tmp_path):
    record = RunRecord(tmp_path, "key", {})
    record.data["metrics"] = {"unlearned": {"judge": None}}
    record.data["null_metrics"] = {"unlearned.judge": "no verdict could be parsed"}
    record.finish("completed")
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "completed"


# ---- cached evaluations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        (["suites", "forget", "prob"], "abc"),
        (["suites", "forget", "prob"], None),
        (["suites", "retain", "rouge"], [0.5]),
        (["model_utility"], "0.4"),
        (["per_example", "forget", "truth_ratio"], "oops"),
        (["suites"], []),
        (["per_example"], None),
    ],
)
def test_a_cached_evaluation_with_wrong_content_is_set_aside_and_computed_again(
    tmp_path, caplog, damage, tofu_summarize
):
    path = tmp_path / "eval-k.json"
    path.write_text(json.dumps(_damaged(*damage)))
    computed = []

    def compute():
        computed.append(1)
        return GOOD_EVALUATION

    with caplog.at_level(logging.WARNING):
        result = cached_json(path, compute, "the retain model", evaluation_check(tofu_summarize))
    assert result == GOOD_EVALUATION and computed == [1]
    assert json.loads(path.read_text()) == GOOD_EVALUATION
    assert len(list(tmp_path.glob(".eval-k.json.corrupt-*"))) == 1
    lines = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1 and "evaluation of the retain model is corrupt" in lines[0].getMessage()


def test_a_sound_cached_evaluation_is_reused(tmp_path, tofu_summarize):
    path = tmp_path / "eval-k.json"
    path.write_text(json.dumps(GOOD_EVALUATION))
    got = cached_json(path, lambda: pytest.fail("recomputed"), "x", evaluation_check(tofu_summarize))
    assert got == GOOD_EVALUATION


# ---- COMPLETE markers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "marker",
    [
        {"files": {"model.safetensors": 1}},
        {"files": {"model.safetensors": [12, 34]}},
        {"files": {"model.safetensors": [-1, "0" * 64]}},
        {"files": {"model.safetensors": ["12", "0" * 64]}},
        {"files": ["model.safetensors"]},
        {"files": None},
        [1, 2],
        "ok but not quite",
    ],
)
def test_a_marker_with_wrong_types_is_corrupt_not_a_crash(tmp_path, caplog, marker):
    entry = cache.CacheEntry(tmp_path, "models", "k", "tiny test model")
    entry.start()
    entry.finish({"built": 1})
    (entry.path / cache.MARKER).write_text(json.dumps(marker))
    assert cache.verify(entry.path) is not None
    with caplog.at_level(logging.WARNING):
        assert entry.ready() is False  # set aside; the caller rebuilds it
    entry.abandon()
    assert "cache entry for tiny test model is corrupt" in caplog.text and not entry.path.exists()


def test_an_entry_whose_content_fails_its_check_is_set_aside(tmp_path, caplog):
    def holds_two(path):
        return None if len(json.loads((path / "items.json").read_text())) == 2 else "not 2 items"

    entry = cache.CacheEntry(tmp_path, "kind", "k", "two items", check=holds_two)
    (entry.start() / "items.json").write_text("[1]")  # checksummed and complete, but for other inputs
    entry.finish()
    with caplog.at_level(logging.WARNING):
        assert entry.ready() is False
    entry.abandon()
    assert "corrupt (not 2 items)" in caplog.text


# ---- the finished-job index and the records it points at ------------------------------------------------


@pytest.mark.parametrize("pointer", [{"results": 12345}, {"results": None}, {"results": ["a"]}, [], "x", {}])
def test_a_damaged_job_index_is_set_aside_and_the_job_runs(tmp_path, caplog, pointer):
    index = tmp_path / "jobs" / "k.json"
    index.parent.mkdir()
    index.write_text(json.dumps(pointer))
    with caplog.at_level(logging.WARNING):
        assert job._finished_job(tmp_path, "k") is None
    assert not index.exists() and list(index.parent.glob(".k.json.corrupt-*"))
    assert "finished-job index is corrupt" in caplog.text


@pytest.mark.parametrize("value", ["abc", None, float("nan"), [1], {"a": "b"}])
def test_a_completed_record_holding_a_bad_metric_is_not_reused(tmp_path, caplog, value):
    run = tmp_path / "run"
    run.mkdir()
    record = {"status": "completed", "job_key": "k", "metrics": {"unlearned": {"forget_prob": value}}}
    (run / "results.json").write_text(json.dumps(record))
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "k.json").write_text(json.dumps({"results": str(run / "results.json")}))
    with caplog.at_level(logging.WARNING):
        assert job._finished_job(tmp_path, "k", run) is None
    assert "not reusing the completed record" in caplog.text and "metrics.unlearned.forget_prob" in caplog.text
    record["metrics"]["unlearned"]["forget_prob"] = 0.25  # the same record, sound, is reused
    (run / "results.json").write_text(json.dumps(record))
    assert job._finished_job(tmp_path, "k", run)["metrics"] == record["metrics"]


# ---- a full disk: the error names the file; a full cache during an analysis costs the reuse only ------------


def _fill(mount) -> None:
    with contextlib.suppress(OSError), open(mount / "filler", "wb") as f:
        while True:
            f.write(b"\0" * (1 << 16))


def test_a_json_write_on_a_full_disk_names_the_file(tmp_path):
    from runner.cache import write_json_atomic
    from runner.errors import environment_problem
    from tests.end_to_end.test_faults import _tmpfs

    with _tmpfs(tmp_path / "small", "256k") as mount:
        _fill(mount)
        with pytest.raises(OSError) as err:
            write_json_atomic(mount / "jobs" / "k.json", {"results": "x" * 100_000})
    assert err.value.filename == str(mount / "jobs" / "k.json")
    assert f"no space left on the device ({mount / 'jobs' / 'k.json'})" in environment_problem(err.value)


def test_a_full_cache_during_an_analysis_costs_the_reuse_not_the_job(shared_cache, tmp_path, caplog):
    from runner.analysis import responses
    from runner.data.qa import PromptFormat
    from tests.analysis.test_trace import QUESTIONS, SETTINGS, _tiny_base
    from tests.end_to_end.test_faults import _tmpfs

    model, tok = _tiny_base(shared_cache)
    ids = responses.prompt_ids(tok, PromptFormat(), QUESTIONS[:2])
    with _tmpfs(tmp_path / "small", "64k") as mount:
        (mount / responses.KIND).mkdir()
        _fill(mount)
        with caplog.at_level(logging.WARNING):
            out, how = responses.responses(model, tok, ids, SETTINGS, "fp32", mount, {"tiny": 0}, "base")
    assert len(out) == 2 and how["cached"] is False
    assert "could not store base responses in the cache (No space left on device)" in caplog.text


@pytest.mark.parametrize("meta", [{"kind": "retain", "rows": 2}, {"kind": "target", "rows": 3}, [1], None])
def test_an_entry_built_for_other_inputs_is_set_aside(tmp_path, caplog, meta):
    from runner.cache_schema import meta_check

    entry = cache.CacheEntry(tmp_path, "finetuned", "k", "TOFU target model", meta_check({"kind": "target", "rows": 2}))
    out = entry.start()
    (out / "trainable.safetensors").write_bytes(b"x")
    entry.finish(meta)  # COMPLETE and its checksums agree with the files: only the content is wrong
    with caplog.at_level(logging.WARNING):
        assert entry.ready() is False
    entry.abandon()
    assert "cache entry for TOFU target model is corrupt (meta.json" in caplog.text


def test_a_metric_declared_nullable_is_recorded_with_its_reason(tmp_path):
    record = RunRecord(tmp_path, "key", {})
    record.data["metrics"] = {"unlearned": {"math500_reflection_rate_in_window": None, "math500_accuracy": None}}
    with pytest.raises(InvalidResult, match="math500_accuracy is null with no reason"):  # accuracy is always a number
        record.finish("completed")
    record.data["metrics"]["unlearned"]["math500_accuracy"] = 0.5
    record.finish("completed")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "completed"
    assert saved["null_metrics"] == {
        "unlearned.math500_reflection_rate_in_window": "no generated token falls in the positions this rate counts"
    }
