"""results.json: the record a job writes (atomically, scrubbed) and reads back, and the flattening of records."""

from __future__ import annotations

import json

from runner.output import record as R
from runner.output.secrets import REDACTED


def test_flatten():
    assert R.flatten({"a": {"b": 1, "c": [1, 2]}, "d": {}}) == {"a.b": 1, "a.c": [1, 2], "d": {}}
    assert R.flatten({"a": {"b": {"c": 1}}}, "x", "/") == {"x/a/b/c": 1}


def test_record_stages_finish_and_scrubbed_config(tmp_path):
    record = R.RunRecord(tmp_path, "key1", {"seed": 3, "service": {"api_key": "PlantedConfigSecret-91827364"}})
    assert R.read_results(tmp_path / "results.json")["status"] == "running"  # on disk from the start
    with record.stage("unlearn"):
        pass
    record.finish("completed")
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["status"] == "completed" and data["job_key"] == "key1" and data["config"]["seed"] == 3
    assert data["config"]["service"]["api_key"] == REDACTED
    assert set(data["timings"]) == {"unlearn"} and data["timings"]["unlearn"] >= 0
    assert data["versions"]["python"].count(".") == 2
    assert list(tmp_path.iterdir()) == [tmp_path / "results.json"]  # no temporary file left behind


def test_read_results_of_garbage_is_none(tmp_path):
    path = tmp_path / "results.json"
    assert R.read_results(path) is None  # missing
    for content in (b"{not json", b"[1, 2]", b"null", b"\xff\xfe"):
        path.write_bytes(content)
        assert R.read_results(path) is None, content
    path.write_text('{"status": "failed"}')
    assert R.read_results(path) == {"status": "failed"}


def test_every_key_of_real_records_is_documented(sweep):
    """The sweep's real records (completed, reused and failed tiny jobs) hold no top-level key that FIELDS
    (and so docs/reference/results.md) does not list."""
    records = [R.read_results(p) for p in sorted(sweep.rglob("results.json"))]
    assert {r["status"] for r in records} == {"completed", "failed"}
    for record in records:
        assert set(record) <= set(R.FIELDS), set(record) - set(R.FIELDS)
    failed = next(r for r in records if r["status"] == "failed")
    assert {"error", "finished", "choices", "launch"} <= set(failed)
