"""``python -m runner.report DIR... [report=tofu] [key=value ...]``: paper-style tables and plots of a sweep.

Reads only the ``results.json`` files found (recursively) under the given run or sweep
directories, so it works offline and long after the runs. A preset in ``conf/report/<name>.yaml``
says which runs form a row (``rows``: dotted keys into results.json such as ``choices.method`` or
``config.coreset.ratio``), which numbers are columns (a metric of the unlearned model, or any
dotted key) and their direction (up, down, zero: closest to 0 is best), and which plots to draw;
``key=value`` arguments override the preset (OmegaConf dot-list syntax).

Each row is the mean ± sample standard deviation over the runs it groups (the seeds); the
reference models (target / original, retain) come first, as in the papers; the best value of
each column among the methods is bold. A failed or unfinished run is never dropped: its row is
marked (†) and a note says which run and why. Outputs: Markdown (printed), LaTeX (booktabs)
and CSV next to the input, plus the preset's plots as PNG and PDF.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from runner.errors import ConfigError
from runner.table import ARROWS

log = logging.getLogger(__name__)
PRESETS_DIR = Path(__file__).resolve().parents[1] / "conf" / "report"
DIRECTIONS = {"up": "↑", "down": "↓", "zero": "→0", "none": ""}
_ARROW_TO_DIRECTION = {"↑": "up", "↓": "down", "→0": "zero"}
STATUS_ORDER = {"completed": 0, "interrupted": 1, "running": 2, "failed": 3}
# config keys that never distinguish two runs of one row (they say where or how a run reported)
NOT_A_SETTING = ("config.seed", "config.paths", "config.logger", "config.sweep_name")
DEFAULT_LABELS = {
    "ga": "GA",
    "graddiff": "GradDiff",
    "npo": "NPO",
    "simnpo": "SimNPO",
    "idkdpo": "IdkDPO",
    "wga": "WGA",
    "undial": "UNDIAL",
    "rmu": "RMU",
    "task_vector": "Task Vector",
    "blur": "BLUR",
    "ilu": "ILU",
}


# ---------------------------------------------------------------- reading runs


def find_results(paths: list[str | Path]) -> list[Path]:
    """Every results.json under the given directories (or the files themselves), sorted."""
    found = set()
    for p in map(Path, paths):
        if p.is_file() and p.name == "results.json":
            found.add(p.resolve())
        elif p.is_dir():
            found.update(f.resolve() for f in p.rglob("results.json"))
        else:
            raise ConfigError("report inputs", f"{p} is neither a directory nor a results.json", "pass run dirs")
    return sorted(found)


def load_runs(paths: list[str | Path]) -> list[dict]:
    """The runs found, one per job: reruns of one job (same job_key) keep the most complete record."""
    by_key: dict[str, dict] = {}
    for path in find_results(paths):
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("skipping unreadable %s: %s", path, exc)
            continue
        if not isinstance(data, dict):
            log.warning(
                "skipping %s: it holds %s, not a run record", path, "null" if data is None else type(data).__name__
            )
            continue
        data["_path"] = str(path)
        key = data.get("job_key") or str(path)
        old = by_key.get(key)
        if old is None or _better(data, old):
            by_key[key] = data
    return list(by_key.values())


def _better(new: dict, old: dict) -> bool:
    """Completed beats unfinished beats failed; between equals, the later record (ISO stamps sort as text)."""
    rank_new, rank_old = STATUS_ORDER.get(new.get("status"), 9), STATUS_ORDER.get(old.get("status"), 9)
    if rank_new != rank_old:
        return rank_new < rank_old
    return (new.get("finished") or new.get("started") or "") > (old.get("finished") or old.get("started") or "")


def lookup(run: dict, key: str):
    """A dotted key into a run's record (``choices.method``, ``config.coreset.ratio``, ``attack.task_after``)."""
    node = run
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


# ---------------------------------------------------------------- the preset


@dataclass
class Column:
    id: str
    label: str
    direction: str = "none"
    metric: str | None = None  # a metric of the row's model (metrics.<model_row>.<metric>)
    key: str | None = None  # or any dotted key of results.json
    fmt: str = ".3f"
    scale: float = 1.0

    @property
    def arrow(self) -> str:
        return DIRECTIONS[self.direction]

    def value(self, run: dict, model_row: str):
        raw = lookup(run, f"metrics.{model_row}.{self.metric}") if self.metric else lookup(run, self.key)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            return None
        return float(raw) * self.scale


def load_preset(name: str, overrides: list[str] = ()) -> dict:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        options = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
        raise ConfigError("report", f"no preset `{name}`", f"choose one of: {options}")
    cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides)))
    return OmegaConf.to_container(cfg, resolve=True)


def parse_columns(specs: list) -> list[Column]:
    columns = []
    for spec in specs or []:
        if isinstance(spec, str):  # "forget_prob" (a metric) or "attack.task_after" (a key)
            spec = {"key": spec} if "." in spec else {"metric": spec}
        if not spec.get("metric") and not spec.get("key"):
            raise ConfigError("report.columns", f"{spec} names neither `metric` nor `key`", "add metric: <name>")
        ident = spec.get("metric") or spec["key"]
        direction = spec.get("direction") or _ARROW_TO_DIRECTION.get(ARROWS.get(ident, ""), "none")
        if direction not in DIRECTIONS:
            raise ConfigError(f"report.columns.{ident}.direction", f"`{direction}` unknown", "use up, down or zero")
        columns.append(
            Column(
                id=ident,
                label=spec.get("label") or ident,
                direction=direction,
                metric=spec.get("metric"),
                key=spec.get("key"),
                fmt=spec.get("format") or ".3f",
                scale=float(spec.get("scale", 1.0)),
            )
        )
    return columns


# ---------------------------------------------------------------- the table


@dataclass
class Row:
    label: str
    kind: str  # "reference" or "method"
    model_row: str
    keys: dict = field(default_factory=dict)  # the row keys' values
    runs: list = field(default_factory=list)
    values: dict = field(default_factory=dict)  # column id -> list of values (one per completed run)
    note: str = ""

    def stats(self, col: Column) -> tuple[float | None, float | None, int]:
        vals = self.values.get(col.id) or []
        if not vals:
            return None, None, 0
        std = statistics.stdev(vals) if len(vals) > 1 else None
        if self.kind == "reference" and not std:
            std = None  # one model seen by every seed: no spread to report
        return statistics.fmean(vals), std, len(vals)

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
    labels = {**DEFAULT_LABELS, **(preset.get("labels") or {})}
    if preset.get("filter"):
        runs = [r for r in runs if all(_same(lookup(r, k), v) for k, v in preset["filter"].items())]
    completed = [r for r in runs if r.get("status") == "completed"]

    rows: list[Row] = []
    for kind, label in (preset.get("references") or {}).items():
        row = Row(label=str(label), kind="reference", model_row=kind)
        # a reference model is the same for every method: one value per seed, not per run
        per_seed = {}
        for r in completed:
            if lookup(r, f"metrics.{kind}") is not None:
                per_seed.setdefault(lookup(r, "config.seed"), r)
        row.runs = list(per_seed.values())
        for col in columns:
            if col.metric:
                row.values[col.id] = [v for r in row.runs if (v := col.value(r, kind)) is not None]
        if row.runs:
            rows.append(row)

    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(_row_values(r, row_keys), []).append(r)
    notes = []
    for values in sorted(groups, key=_natural_key):
        members = groups[values]
        base = str(values[0]) if isinstance(values[0], _Unlabelled) else ", ".join(_label(v, labels) for v in values)
        for model_row in model_rows:
            label = base if len(model_rows) == 1 else f"{base} ({model_labels.get(model_row, model_row)})"
            row = Row(label=label, kind="method", model_row=model_row, keys=dict(zip(row_keys, values, strict=True)))
            row.runs = sorted(members, key=lambda r: _natural_key((lookup(r, "config.seed"),)))
            for col in columns:
                row.values[col.id] = [
                    v for r in row.runs if r.get("status") == "completed" and (v := col.value(r, model_row)) is not None
                ]
            rows.append(row)
        bad = [r for r in members if r.get("status") != "completed"]
        if bad:
            what = "; ".join(_describe_incomplete(r) for r in bad)
            notes.append(f"† {base}: {len(bad)} of {len(members)} runs did not complete ({what})")
            for row in rows[-len(model_rows) :]:
                row.note = "†"
        mixed = _differing_settings([r for r in members if r.get("status") == "completed"], row_keys)
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


class _Unlabelled(str):
    """The row of a record that holds none of the row keys (empty, cut short): named after its run directory."""


def _row_values(run: dict, row_keys: list[str]) -> tuple:
    values = tuple(_hashable(lookup(run, k)) for k in row_keys)
    if all(v is None for v in values) and run.get("status") != "completed" and run.get("_path"):
        name = _Unlabelled(f"{Path(run['_path']).parent.name} (record without fields)")
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


def _label(value, labels: dict) -> str:
    if value is None:
        return "?"
    return str(labels.get(value, labels.get(str(value), value)))


def _describe_incomplete(run: dict) -> str:
    status = run.get("status") or "without a status (an empty or cut-short results.json)"
    seed = lookup(run, "config.seed")
    message = str((run.get("error") or {}).get("message", "")).splitlines()[0:1]
    detail = f": {message[0][:120]}" if message else ""
    return f"seed={seed} {status}{detail}"


def _differing_settings(runs: list[dict], row_keys: list[str]) -> list[str]:
    """Config keys (other than the seed and row keys) whose values differ between the runs of one row."""
    from runner.tracking import flatten

    flats = [flatten(r.get("config") or {}, "config") for r in runs if r.get("config")]
    if len(flats) < 2:
        return []
    keys = set().union(*flats)
    skip = tuple(NOT_A_SETTING) + tuple(row_keys)
    return sorted(
        k
        for k in keys
        if not any(k == s or k.startswith(s + ".") for s in skip)
        and len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1
    )


def _best_rows(table: Table, col: Column) -> set[int]:
    """Indices of the method rows holding the best mean of ``col`` by its direction (ties: all)."""
    if col.direction == "none":
        return set()
    scored = []
    for i, row in enumerate(table.rows):
        mean, _, _ = row.stats(col)
        if row.kind == "method" and mean is not None:
            shown = float(format(mean, col.fmt))  # compare what the reader sees: equal printed values tie
            scored.append((i, {"up": -shown, "down": shown, "zero": abs(shown)}[col.direction]))
    if not scored:
        return set()
    top = min(s for _, s in scored)
    return {i for i, s in scored if s == top}


# ---------------------------------------------------------------- rendering


def format_cell(mean, std, col: Column, pm: str = " ± ") -> str:
    if mean is None:
        return "—"
    text = format(mean, col.fmt)
    if std is not None:
        text += pm + format(std, col.fmt)
    return text


def to_markdown(table: Table) -> str:
    header = [table.row_header] + [f"{c.label} {c.arrow}".strip() for c in table.columns]
    lines = [f"**{table.title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(table.rows):
        cells = [f"{row.label}{(' ' + row.note) if row.note else ''}"]
        for col in table.columns:
            mean, std, _ = row.stats(col)
            text = format_cell(mean, std, col)
            cells.append(f"**{text}**" if i in table.best.get(col.id, ()) else text)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *table.notes, _seed_note(table)]
    return "\n".join(lines)


def _seed_note(table: Table) -> str:
    counts = sorted({len(r.values.get(c.id) or []) for r in table.rows if r.kind == "method" for c in table.columns})
    counts = [n for n in counts if n]
    runs = "/".join(map(str, counts)) if counts else "0"
    return f"Mean ± sample standard deviation over {runs} seed(s); best per column in bold (by its arrow)."


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "→": r"$\rightarrow$",
    "—": "--",
    "†": r"$^\dagger$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: Table) -> str:
    spec = "l" + "c" * len(table.columns)
    header = [latex_escape(table.row_header)] + [latex_escape(f"{c.label} {c.arrow}".strip()) for c in table.columns]
    out = [
        "% generated by python -m runner.report; needs \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(table.title)}}}",
        f"\\label{{tab:{re.sub(r'[^A-Za-z0-9:-]', '-', table.name)}}}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(header) + " \\\\",
        "\\midrule",
    ]
    previous = None
    for i, row in enumerate(table.rows):
        if previous == "reference" and row.kind == "method":
            out.append("\\midrule")
        previous = row.kind
        cells = [latex_escape(row.label + (" " + row.note if row.note else ""))]
        for col in table.columns:
            mean, std, _ = row.stats(col)
            text = latex_escape(format_cell(mean, std, col))
            cells.append(f"\\textbf{{{text}}}" if i in table.best.get(col.id, ()) else text)
        out.append(" & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    notes = [*table.notes, _seed_note(table)]
    out.append("\\par\\smallskip\\footnotesize " + " \\\\ ".join(latex_escape(n) for n in notes))
    out.append("\\end{table}")
    return "\n".join(out) + "\n"


def to_csv(table: Table) -> str:
    keys = list(dict.fromkeys(k for row in table.rows for k in row.keys))
    header = ["label", "kind", "model", *keys, "status", "runs", "completed"]
    for c in table.columns:
        header += [f"{c.id}_mean", f"{c.id}_std", f"{c.id}_n", f"{c.id}_best"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for i, row in enumerate(table.rows):
        statuses = sorted({r.get("status", "unknown") for r in row.runs})
        line = [row.label, row.kind, row.model_row, *[row.keys.get(k, "") for k in keys]]
        line += ["+".join(statuses), len(row.runs), len(row.runs) - len(row.incomplete)]
        for c in table.columns:
            mean, std, n = row.stats(c)
            line += [_num(mean), _num(std), n, int(i in table.best.get(c.id, ()))]
        writer.writerow(line)
    return buf.getvalue()


def _num(v) -> str:
    return "" if v is None else repr(float(v))


# ---------------------------------------------------------------- entry point


def output_dir(inputs: list[str | Path], out: str | None) -> Path:
    if out:
        return Path(out)
    resolved = [Path(p).resolve() for p in inputs]
    dirs = [p.parent if p.is_file() else p for p in resolved]
    return Path(os.path.commonpath([str(d) for d in dirs]))


def write_report(inputs: list[str | Path], preset: dict, out: str | None = None, plots: bool = True) -> dict:
    """Build the table (and plots) of ``inputs``; returns {"table": Table, "markdown": str, "files": [...]}."""
    runs = load_runs(inputs)
    if not runs:
        raise ConfigError("report inputs", f"no results.json under {', '.join(map(str, inputs))}", "pass sweep dirs")
    table = build_table(runs, preset)
    target = output_dir(inputs, out or preset.get("out"))
    target.mkdir(parents=True, exist_ok=True)
    stem = f"report_{table.name}"
    files = []
    markdown = to_markdown(table)
    for ext, text in (("md", markdown + "\n"), ("tex", to_latex(table)), ("csv", to_csv(table))):
        path = target / f"{stem}.{ext}"
        path.write_text(text)
        files.append(path)
    if plots and preset.get("plots"):
        from runner import plots as plotting

        for spec in preset["plots"]:
            files += plotting.draw(spec, runs, table, preset, target / f"{stem}_{spec['kind']}")
    return {"table": table, "markdown": markdown, "files": files, "runs": runs}


def _is_path(arg: str) -> bool:
    """An existing file or folder; a setting too long to be a file name is not one (and must not crash the check)."""
    try:
        return Path(arg).exists()
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runner.report",
        description="Paper-style tables (Markdown, LaTeX, CSV) and plots from results.json files.",
        epilog="examples: report=tofu | report=generic rows=[choices.method,config.unlearn.learning_rate] "
        "columns=[forget_prob,model_utility] | out=paper/",
    )
    parser.add_argument("args", nargs="+", help="run or sweep directories, then key=value settings")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    ns = parser.parse_args(argv)
    # sweep folders are named like `method=ga,seed=0`: an existing path is an input, not a setting
    inputs = [a for a in ns.args if "=" not in a or _is_path(a)]
    settings = [a for a in ns.args if a not in inputs]
    name = next((s.split("=", 1)[1] for s in settings if s.startswith("report=")), "tofu")
    try:
        preset = load_preset(name, [s for s in settings if not s.startswith("report=")])
        if not inputs:
            raise ConfigError("report inputs", "no directory given", "pass one or more run or sweep directories")
        result = write_report(inputs, preset, plots=not ns.no_plots)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result["markdown"])
    print("\nwrote: " + ", ".join(str(p) for p in result["files"]))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    sys.exit(main())
