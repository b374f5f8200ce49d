"""The report's table: which runs form each row, and each column's mean ± std over them (pandas).

The reference models (target / original, retain) come first, one value per seed since every method
of a seed shares them; then one row per group of runs with equal ``rows`` keys and per model row
(``unlearned``, ``attacked`` ...). A failed or unfinished run is never dropped: its row is marked (†)
and a note says which run and why. The best mean of each column among the methods, by the
column's direction, is marked for bold.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from runner.output.frame import lookup, runs_frame
from runner.output.metrics import CHOICE_LABELS
from runner.output.preset import Column, parse_columns

# config keys that never distinguish two runs of one row (they say where or how a run reported)
NOT_A_SETTING = ("config.seed", "config.paths", "config.logger", "config.sweep_name")


@dataclass
class Row:
    label: str
    kind: str  # "reference" or "method"
    model_row: str
    keys: dict = field(default_factory=dict)  # the row keys' values
    runs: list = field(default_factory=list)
    values: dict = field(default_factory=dict)  # column id -> its values, one per completed run that has one
    summary: dict = field(default_factory=dict)  # column id -> (mean, std, n), aggregated by pandas
    note: str = ""
    run_level_shown_above: set = field(default_factory=set)  # key columns shown on the group's first model row

    def stats(self, col: Column) -> tuple[float | None, float | None, int]:
        return self.summary.get(col.id, (None, None, 0))

    @property
    def incomplete(self) -> list[dict]:
        return [r for r in self.runs if r.get("status") != "completed"]


@dataclass
class Table:
    title: str
    name: str
    row_header: str
    columns: list[Column]
    rows: list[Row]
    notes: list[str]
    best: dict = field(default_factory=dict)  # column id -> set of row indices in bold


def build_table(runs: list[dict], preset: dict) -> Table:
    columns = parse_columns(preset.get("columns"))
    row_keys = list(preset.get("rows") or ["choices.method"])
    model_rows = list(preset.get("model_rows") or ["unlearned"])
    model_labels = preset.get("model_row_labels") or {}
    labels = {**CHOICE_LABELS, **(preset.get("labels") or {})}
    if preset.get("filter"):
        runs = [r for r in runs if all(_same(lookup(r, k), v) for k, v in preset["filter"].items())]
    frame = runs_frame(runs)
    frame["_completed"] = [r.get("status") == "completed" for r in runs]
    frame["_seed"] = pd.Series([lookup(r, "config.seed") for r in runs], index=frame.index, dtype=object)

    rows: list[Row] = []
    for kind, label in (preset.get("references") or {}).items():
        row = _reference_row(runs, frame, columns, kind, str(label))
        if row.runs:
            rows.append(row)

    # a group id per distinct tuple of row-key values (tuples would turn into a MultiIndex in groupby)
    keys = [_row_values(r, row_keys) for r in runs]
    ids = {values: i for i, values in enumerate(dict.fromkeys(keys))}
    frame["_group"] = [ids[k] for k in keys]
    value_columns = {}
    for model_row in model_rows:
        for col in columns:
            value_columns[(model_row, col.id)] = name = f"{model_row}/{col.id}"
            frame[name] = col.values(frame, model_row)
    completed = frame[frame["_completed"]]
    stats = completed.groupby("_group")[list(value_columns.values())].agg(["mean", "std", "count"])

    notes = []
    for values in sorted(ids, key=_natural_key):
        group = frame[frame["_group"] == ids[values]]
        group = group.loc[sorted(group.index, key=lambda i: _natural_key((group.at[i, "_seed"],)))]  # by seed
        members = [runs[i] for i in group.index]
        base = str(values[0]) if isinstance(values[0], _Unlabelled) else _row_label(values, labels)
        for position, model_row in enumerate(model_rows):
            label = base if len(model_rows) == 1 else f"{base} ({model_labels.get(model_row, model_row)})"
            row = Row(label=label, kind="method", model_row=model_row, keys=dict(zip(row_keys, values, strict=True)))
            row.runs = members
            if position:
                row.run_level_shown_above = {c.id for c in columns if not c.metric}
            for col in columns:
                name = value_columns[(model_row, col.id)]
                row.values[col.id] = group.loc[group["_completed"], name].dropna().tolist()
                if ids[values] in stats.index:
                    mean, std, n = stats.loc[ids[values], name]
                    row.summary[col.id] = (_or_none(mean), _or_none(std), int(n))
            rows.append(row)
        notes += [
            f"{base}: {r['_path']}: {problem}; left out of the mean"
            for r in members
            for problem in r.get("_left_out", [])
        ]
        bad = [r for r in members if r.get("status") != "completed"]
        if bad:
            what = "; ".join(_describe_incomplete(r, members) for r in bad)
            notes.append(f"† {base}: {len(bad)} of {len(members)} runs did not complete ({what})")
            for row in rows[-len(model_rows) :]:
                row.note = "†"
        mixed = _differing_settings(group[group["_completed"]], runs, row_keys)
        if mixed:
            notes.append(f"{base}: averages runs that differ in {', '.join(mixed)}; add them to rows= to separate them")

    if preset.get("drop_empty_columns", True):
        columns = [c for c in columns if any(row.values.get(c.id) for row in rows)] or columns
    table = Table(
        title=str(preset.get("title") or preset.get("name") or "report"),
        name=str(preset.get("name") or "report"),
        row_header=str(preset.get("row_header") or "Method"),
        columns=columns,
        rows=rows,
        notes=notes,
    )
    table.best = {c.id: _best_rows(table, c) for c in columns}
    return table


def _reference_row(runs: list[dict], frame: pd.DataFrame, columns: list[Column], kind: str, label: str) -> Row:
    """A reference model (``target``, ``retain``): the same model for every method of a seed, so one value per seed."""
    row = Row(label=label, kind="reference", model_row=kind)
    seen = frame["_completed"] & pd.Series([lookup(r, f"metrics.{kind}") is not None for r in runs], index=frame.index)
    per_seed = frame[seen].drop_duplicates("_seed")
    row.runs = [runs[i] for i in per_seed.index]
    for col in columns:
        if col.metric:
            values = col.values(per_seed, kind).dropna()
            row.values[col.id] = values.tolist()
            if len(values):
                # NaN for a single value; 0 when every seed saw the same model: no spread worth reporting
                std = _or_none(values.std())
                row.summary[col.id] = (float(values.mean()), std or None, len(values))
    return row


def _or_none(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


class _Unlabelled(str):
    """The row of a record that holds none of the row keys (empty, cut short): named after its run directory."""


def _row_values(run: dict, row_keys: list[str]) -> tuple:
    values = tuple(_hashable(lookup(run, k)) for k in row_keys)
    if all(v is None for v in values) and run.get("status") != "completed" and run.get("_path"):
        what = "damaged record" if run.get("_problems") else "record without fields"
        name = _Unlabelled(f"{Path(run['_path']).parent.name} ({what})")
        return (name, *[None] * (len(row_keys) - 1))
    return values


def _same(a, b) -> bool:
    return a == b or str(a) == str(b)


def _hashable(v):
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


def _natural_key(values: tuple) -> tuple:
    # numbers by value, then strings; None last
    return tuple(
        (2, "") if v is None else (0, float(v)) if isinstance(v, (int, float)) else (1, str(v)) for v in values
    )


def _row_label(values: tuple, labels: dict) -> str:
    """The row keys' values joined; a key the runs do not have is left out when another names the row (a full-set
    run beside coreset runs has no ``coreset.ratio``: ``NPO``, not ``NPO, ?``)."""
    named = [v for v in values if v is not None] or list(values)
    return ", ".join(_label(v, labels) for v in named)


def _label(value, labels: dict) -> str:
    if value is None:
        return "?"
    return str(labels.get(value, labels.get(str(value), value)))


def choice_label(value) -> str:
    """The display name of a config choice (``npo`` -> ``NPO``), for the plots' legends and titles."""
    return _label(value, CHOICE_LABELS)


def _describe_incomplete(run: dict, members: list[dict]) -> str:
    if run.get("_problems"):
        return f"{run.get('_path')} is damaged: {'; '.join(run['_problems'])}"
    status = run.get("status") or "without a status (an empty or cut-short results.json)"
    message = str((run.get("error") or {}).get("message", "")).splitlines()[0:1]
    detail = f": {message[0][:120]}" if message else ""
    return f"{_distinguishing(run, members)} {status}{detail}"


def _distinguishing(run: dict, members: list[dict]) -> str:
    """The seed and the command-line overrides this run does not share with every run of its row: two failed
    runs of one seed (a learning-rate sweep) are told apart by what was set differently."""
    mine = [o for o in run.get("overrides") or [] if isinstance(o, str)]
    shared = [set(m.get("overrides") or []) for m in members if m is not run]
    own = [o for o in mine if not shared or not all(o in s for s in shared)]
    seed = f"seed={lookup(run, 'config.seed')}"
    return ", ".join([seed] + [o for o in own if o.lstrip("+~").partition("=")[0] != "seed"])


def _differing_settings(completed: pd.DataFrame, runs: list[dict], row_keys: list[str]) -> list[str]:
    """Config keys (other than the seed and row keys) whose values differ between the completed runs of one row."""
    completed = completed[[bool(runs[i].get("config")) for i in completed.index]]
    if len(completed) < 2:
        return []
    skip = NOT_A_SETTING + tuple(row_keys)
    keys = [
        k
        for k in completed.columns
        if k.startswith("config.") and not any(k == s or k.startswith(s + ".") for s in skip)
    ]
    swept = [k for k in ("config.seed", *row_keys) if k in completed.columns]
    return sorted(
        k
        for k in keys
        if completed[k].map(_canonical).nunique() > 1 and not any(_follows(completed[k], completed[s]) for s in swept)
    )


def _follows(derived: pd.Series, swept: pd.Series) -> bool:
    """True when a key only repeats a swept one in every run: the record holds the config resolved, so
    ``decoding.seed: ${seed}`` differs between seeds exactly as ``seed`` does and is no hidden setting."""
    return all(_canonical(a) == _canonical(b) for a, b in zip(derived, swept, strict=True))


def _canonical(value) -> str:
    # a key one run lacks is NaN in the frame, as null as a None it holds
    if isinstance(value, float) and math.isnan(value):
        value = None
    return json.dumps(value, sort_keys=True, default=str)


def _best_rows(table: Table, col: Column) -> set[int]:
    """Indices of the method rows holding the best mean of ``col`` by its direction (ties: all)."""
    if col.direction == "none":
        return set()
    scored = []
    for i, row in enumerate(table.rows):
        mean, _, _ = row.stats(col)
        if row.kind == "method" and mean is not None and col.id not in row.run_level_shown_above:
            shown = float(format(mean, col.fmt))  # compare what the reader sees: equal printed values tie
            scored.append((i, {"up": -shown, "down": shown, "zero": abs(shown)}[col.direction]))
    if not scored:
        return set()
    top = min(s for _, s in scored)
    return {i for i, s in scored if s == top}
