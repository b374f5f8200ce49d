"""The report's table from hand-made records: grouping, mean ± std, references, failed runs, bold, notes."""

from __future__ import annotations

import statistics

import pytest

from runner.output.table import build_table


def _run(method, seed, status="completed", lr=1e-4, **unlearned):
    run = {
        "status": status,
        "job_key": f"{method}-{seed}-{lr}",
        "_path": f"/sweep/{method}-{seed}/results.json",
        "choices": {"method": method},
        "config": {"seed": seed, "unlearn": {"learning_rate": lr}, "paths": {"cache_dir": f"/c{seed}"}},
        "metrics": {"target": {"forget_prob": 0.9 + seed / 100}, "retain": {"forget_prob": 0.5}, "unlearned": unlearned}
        if status == "completed"
        else {},
    }
    if status == "failed":
        run["error"] = {"message": "config key `benchmark.source`: missing\nmore lines"}
    return run


RUNS = [
    _run("npo", 1, forget_prob=0.30, model_utility=0.50),
    _run("ga", 0, forget_prob=0.10, model_utility=0.20),
    _run("npo", 0, forget_prob=0.20, model_utility=0.60),
    _run("ga", 1, forget_prob=0.14, model_utility=0.30, lr=2e-4),
    _run("npo", 2, status="failed"),
    {"_path": "/sweep/cut/results.json"},  # an empty record: no status, no keys
]
PRESET = {
    "name": "t",
    "rows": ["choices.method"],
    "references": {"target": "Original", "retain": "Retain"},
    "columns": ["forget_prob", {"metric": "model_utility"}, "retain_prob"],
}


def test_rows_means_stds_and_references():
    table = build_table(RUNS, PRESET)
    # rows sorted by their keys' values, the record without fields named after its directory
    assert [r.label for r in table.rows] == ["Original", "Retain", "cut (record without fields)", "GA", "NPO"]
    assert [c.id for c in table.columns] == ["forget_prob", "model_utility"]  # a column no run has is dropped
    target, retain, cut, ga, npo = table.rows
    fp = table.columns[0]
    # a reference model: one value per seed (not per run); no spread reported where every seed shares it
    assert target.kind == "reference" and target.values["forget_prob"] == [0.91, 0.90]
    assert target.stats(fp) == (pytest.approx(0.905), pytest.approx(statistics.stdev([0.91, 0.90])), 2)
    assert retain.stats(fp) == (0.5, None, 2) and [r["config"]["seed"] for r in retain.runs] == [1, 0]
    assert ga.stats(fp) == (pytest.approx(0.12), pytest.approx(statistics.stdev([0.10, 0.14])), 2)
    assert npo.stats(fp) == (pytest.approx(0.25), pytest.approx(statistics.stdev([0.2, 0.3])), 2)
    assert [r["config"]["seed"] for r in npo.runs] == [0, 1, 2] and len(npo.incomplete) == 1
    assert npo.note == "†" and cut.note == "†" and ga.note == "" and cut.stats(fp) == (None, None, 0)


def test_notes_and_best():
    table = build_table(RUNS, PRESET)
    assert table.notes[0].startswith("† cut (record without fields): 1 of 1 runs did not complete (seed=None without")
    assert (
        table.notes[1]
        == "GA: averages runs that differ in config.unlearn.learning_rate; add them to rows= to separate them"
    )
    assert (
        table.notes[2] == "† NPO: 1 of 3 runs did not complete (seed=2 failed: config key `benchmark.source`: missing)"
    )
    assert table.best == {"forget_prob": {3}, "model_utility": {4}}  # down: GA's 0.12; up: NPO's 0.55


def test_a_single_run_has_no_std_and_a_filter_keeps_matching_runs():
    table = build_table(RUNS, {**PRESET, "filter": {"choices.method": "ga"}, "rows": ["choices.method", "config.seed"]})
    assert [r.label for r in table.rows] == ["Original", "Retain", "GA, 0", "GA, 1"]
    assert table.rows[2].stats(table.columns[0]) == (pytest.approx(0.10), None, 1)
    assert table.notes == []  # one run per row: nothing averaged


def test_a_key_resolved_from_the_seed_is_not_a_hidden_setting():
    # decoding.seed: ${seed} is recorded resolved: it differs between seeds exactly as seed does
    runs = [_run("npo", s, forget_prob=0.1 * (s + 1)) for s in (0, 1)]
    for run in runs:
        run["config"]["decoding"] = {"seed": run["config"]["seed"], "top_k": 5}
    assert build_table(runs, PRESET).notes == []
    runs[1]["config"]["decoding"]["top_k"] = 7  # a real difference is still reported
    assert build_table(runs, PRESET).notes == [
        "NPO: averages runs that differ in config.decoding.top_k; add them to rows= to separate them"
    ]


def test_failed_runs_are_told_apart_by_their_overrides():
    runs = [_run("npo", 2, status="failed", lr=lr) for lr in (1e-4, 2e-4)]
    for run in runs:
        lr = run["config"]["unlearn"]["learning_rate"]
        run["overrides"] = ["method=npo", "seed=2", f"unlearn.learning_rate={lr}"]
    note = build_table(runs, PRESET).notes[0]
    assert note == (
        "† NPO: 2 of 2 runs did not complete (seed=2, unlearn.learning_rate=0.0001 failed: config key"
        " `benchmark.source`: missing; seed=2, unlearn.learning_rate=0.0002 failed: config key `benchmark.source`: missing)"
    )


def test_r2mu_preset_has_the_held_out_trace_mse():
    from runner.output.preset import load_preset
    from runner.output.render import to_markdown

    runs = []
    for method, end, drop in (("rmu", 2.0, 0.05), ("r2mu", 1.0, 0.5)):
        run = _run(method, 0, wmdp_bio=0.3)
        run["training"] = {"unlearn": {"trace_mse": {"start": 2.1, "end": end, "relative_drop": drop, "n": 4}}}
        runs.append(run)
    table = build_table(runs, load_preset("r2mu"))
    assert [c.header for c in table.columns][-2:] == ["Held-out trace MSE ↓", "Trace MSE drop ↑"]
    lines = to_markdown(table).splitlines()
    assert lines[5].endswith("| **1.0000** | **50.0** |") and lines[6].endswith("| 2.0000 | 5.0 |")  # R²MU, RMU


def test_a_row_key_a_run_lacks_is_left_out_of_its_label():
    # a full-set run (no coreset: no ratio) beside a 5 % coreset run, grouped by method and ratio
    full = _run("npo", 0, forget_prob=0.2)
    coreset = _run("npo", 0, forget_prob=0.3)
    coreset["config"]["coreset"] = {"ratio": 0.05}
    table = build_table([full, coreset], {**PRESET, "rows": ["choices.method", "config.coreset.ratio"]})
    assert [r.label for r in table.rows] == ["Original", "Retain", "NPO, 0.05", "NPO"]
    # a row with none of its keys keeps the mark that says so
    assert [r.label for r in build_table([_run(None, 0, forget_prob=0.1)], PRESET).rows][-1] == "?"
