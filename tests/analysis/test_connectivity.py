"""task=analyse analysis=connectivity: the straight line between two saved runs (or a run and its start)."""

from __future__ import annotations

import json
import math

import pytest

from runner import job
from runner.analysis.connectivity import barrier, barrier_table
from runner.errors import ConfigError


def _analyse(tiny_cfg, run_dir, *overrides):
    return job.run(tiny_cfg("task=analyse", "analysis.points=3", *overrides), run_dir)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, shared_cache):
    from tests.conftest import TINY, compose_cfg

    root = tmp_path_factory.mktemp("runs")
    out = {}
    for seed in (1, 2):
        cfg = compose_cfg(
            *TINY, f"paths.cache_dir={shared_cache}", "method=npo", f"seed={seed}", "save_model=trainable"
        )
        out[seed] = (root / f"npo{seed}", job.run(cfg, root / f"npo{seed}"))
    return out


def _same_suites(got: dict, recorded: dict):
    assert set(got) == set(recorded)
    for suite, values in got.items():
        for name, value in values.items():
            if isinstance(value, float):
                assert value == pytest.approx(recorded[suite][name], abs=1e-6), (suite, name)


def test_the_ends_reproduce_each_runs_recorded_evaluation(tiny_cfg, tmp_path, two_runs):
    # evaluated again (reuse_ends=false): what makes reusing the recorded evaluations at the ends sound
    (a, ra), (b, rb) = two_runs[1], two_runs[2]
    result = _analyse(tiny_cfg, tmp_path / "conn", f"analysis.runs=[{a},{b}]", "analysis.reuse_ends=false")
    assert result["status"] == "completed" and list(result["metrics"]) == ["t=0.00", "t=0.50", "t=1.00"]
    assert result["connectivity"]["reused"] == {}
    _same_suites(result["evaluation"]["t=0.00"], ra["evaluation"]["unlearned"])
    _same_suites(result["evaluation"]["t=1.00"], rb["evaluation"]["unlearned"])
    for key in ("forget_quality", "model_utility", "forget_prob"):  # Forget Quality: against A's retain model
        assert result["metrics"]["t=0.00"][key] == pytest.approx(ra["metrics"]["unlearned"][key], abs=1e-6)
    conn = result["connectivity"]
    assert conn["t"] == [0.0, 0.5, 1.0] and len(conn["seconds_per_point"]) == 3
    assert set(conn["barrier"]) == set(result["metrics"]["t=0.00"]) and all(v >= 0 for v in conn["barrier"].values())
    assert (tmp_path / "conn" / "connectivity.png").stat().st_size > 1000


def test_against_start_begins_at_the_target_model(tiny_cfg, tmp_path, two_runs):
    run, recorded = two_runs[1]
    described = json.loads((run / "model" / "model.json").read_text())
    assert described["start"].endswith("trainable.safetensors")  # TOFU: the fine-tuned target's cache entry
    result = _analyse(
        tiny_cfg, tmp_path / "conn", f"analysis.runs=[{run}]", "analysis.against=start", "analysis.reuse_ends=false"
    )
    assert result["status"] == "completed"
    _same_suites(result["evaluation"]["t=0.00"], recorded["evaluation"]["target"])
    _same_suites(result["evaluation"]["t=1.00"], recorded["evaluation"]["unlearned"])


def test_the_ends_reuse_the_runs_recorded_evaluations(tiny_cfg, tmp_path, two_runs, capsys):
    (a, ra), (b, rb) = two_runs[1], two_runs[2]
    result = _analyse(tiny_cfg, tmp_path / "conn", f"analysis.runs=[{a},{b}]")
    conn = result["connectivity"]
    assert conn["reused"] == {"t=0.00": f"{a} (unlearned)", "t=1.00": f"{b} (unlearned)"}
    assert conn["seconds_per_point"][0] == conn["seconds_per_point"][2] == 0.0 < conn["seconds_per_point"][1]
    assert (
        result["metrics"]["t=0.00"] == ra["metrics"]["unlearned"]
        and result["metrics"]["t=1.00"] == rb["metrics"]["unlearned"]
    )
    assert result["evaluation"]["t=1.00"] == rb["evaluation"]["unlearned"]
    # the barriers on the console, one metric a line
    printed = capsys.readouterr().out
    assert "barrier (worst deviation" in printed
    assert all(f"  {m} " in printed for m in conn["barrier"])
    # an end evaluated otherwise (another eval batch size is fine, another max_length is not) is evaluated again
    other = json.loads((b / "results.json").read_text())
    other["config"]["benchmark"]["max_length"] = 17
    moved = tmp_path / "b2"
    moved.mkdir()
    for item in b.iterdir():
        (moved / item.name).symlink_to(item)
    (moved / "results.json").unlink()
    (moved / "results.json").write_text(json.dumps(other))
    again = _analyse(tiny_cfg, tmp_path / "conn2", f"analysis.runs=[{a},{moved}]", "analysis.points=2")
    assert list(again["connectivity"]["reused"]) == ["t=0.00"]


def test_barrier_is_the_worst_deviation_from_the_line_in_the_bad_direction():
    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    dip = [1.0, 0.5, 0.2, 0.9, 1.0]  # line: 1 everywhere
    assert barrier(ts, dip, "up") == pytest.approx(0.8)
    assert barrier(ts, dip, "down") == 0.0  # below the line is good for a down-metric
    assert barrier(ts, dip, "zero") == pytest.approx(0.8)
    bump = [0.0, 0.4, 0.9, 0.6, 1.0]  # line: 0, .25, .5, .75, 1
    assert barrier(ts, bump, "down") == pytest.approx(0.4)
    assert barrier(ts, bump, "up") == pytest.approx(0.15)
    assert barrier(ts, bump, "none") == pytest.approx(0.4)
    assert barrier(ts, [0.0, 0.5, 1.0, 1.5, 2.0], "up") == 0.0  # on the line: linearly connected
    assert math.isnan(barrier(ts, [0.0, math.nan, 1.0, 1.0, 1.0], "up"))
    # a midpoint on the line up to float rounding (5.6e-17 off it) is on the line
    third = [1 / 3, 1 / 3 * 0.5 + 0.9 * 0.5, 0.9]
    assert barrier([0.0, 0.5, 1.0], [0.1, 0.1 * 0.5 + 0.7 * 0.5, 0.7], "none") == 0.0
    assert barrier([0.0, 0.5, 1.0], third, "down") == 0.0
    assert barrier_table({"forget_prob": 0.0, "model_utility": 0.01234}).splitlines()[1:] == [
        "  forget_prob    0",
        "  model_utility  0.01234",
    ]


def test_bad_inputs_are_refused_naming_the_key(tiny_cfg, tmp_path, two_runs):
    run = two_runs[1][0]
    plain = tmp_path / "plain"
    job.run(tiny_cfg("seed=47"), plain)  # kept no weights (a seed no other test runs: no reused job)
    with pytest.raises(ConfigError, match="kept no weights") as err:
        _analyse(tiny_cfg, tmp_path / "a", f"analysis.runs=[{run},{plain}]")
    assert err.value.key == "analysis.runs"
    other = tmp_path / "other"  # another base: a tiny model of another width
    job.run(tiny_cfg("seed=47", "save_model=trainable", "model.tiny.hidden_size=32"), other)
    with pytest.raises(ConfigError, match="different base models") as err:
        _analyse(tiny_cfg, tmp_path / "b", f"analysis.runs=[{run},{other}]")
    assert err.value.key == "analysis.runs"
    with pytest.raises(ConfigError) as err:
        _analyse(tiny_cfg, tmp_path / "c", f"analysis.runs=[{run}]")  # one run without against=start
    assert err.value.key == "analysis.runs"
    record = json.loads((tmp_path / "c" / "results.json").read_text())
    assert record["status"] == "failed" and record["error"]["setting"] == "analysis.runs"
    with pytest.raises(ConfigError) as err:
        job.run(
            tiny_cfg("task=analyse", f"analysis.runs=[{run}]", "analysis.against=start", "analysis.points=1"),
            tmp_path / "d",
        )
    assert err.value.key == "analysis.points"


def test_the_analysed_runs_are_part_of_the_job_key(tmp_path):
    from runner.job_kinds import job_key
    from tests.conftest import compose_cfg

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text('{"status": "completed"}')
    cfg = compose_cfg("task=analyse", f"analysis.runs=[{run}]", "analysis.against=start")
    before = job_key(cfg)
    (run / "results.json").write_text('{"status": "completed", "metrics": {"redone": 1}}')
    assert job_key(cfg) != before  # the run was redone: the analysis is not answered by its stale result


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("results.json", lambda p: p.write_text(p.read_text()[:300])),  # truncated
        ("results.json", lambda p: p.write_text("[1, 2]")),  # JSON, not a record
        ("model/model.json", lambda p: p.write_text(p.read_text()[:40])),
        ("model/trainable.safetensors", lambda p: p.write_bytes(b"")),  # zero bytes
        ("model/trainable.safetensors", lambda p: p.write_bytes(p.read_bytes()[:200])),
    ],
)
def test_a_damaged_run_is_one_error_naming_the_file(tiny_cfg, tmp_path, two_runs, name, damage):
    import shutil

    run = tmp_path / "damaged"
    shutil.copytree(two_runs[1][0], run)
    damage(run / name)
    with pytest.raises(ConfigError, match="damaged") as err:
        _analyse(tiny_cfg, tmp_path / "a", f"analysis.runs=[{run},{two_runs[2][0]}]")
    assert err.value.key == "analysis.runs" and str(run / name) in str(err.value)
    assert "Fix: run the job that wrote it again" in str(err.value)
