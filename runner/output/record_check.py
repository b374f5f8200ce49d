"""Checks of a record's numbers, from both sides: the job that writes it, and the report that reads it.

**Writing** (``record_problems``, ``metric_problems``, ``explain_nulls``): the gate a record passes before
it may say ``completed``. ``metrics`` is ``{row: {name: value}}`` (rows may nest). A value is accepted when
it is a finite int or float (a bool is not a number here), or ``None`` with a reason in the record's
``null_metrics`` (``{"<row>.<name>": "why there is no number"}``). Anything else (a string, a list, NaN,
infinity, a null nobody explained) means the numbers did not come from a sound computation, typically a
damaged cache entry: the job is then ``failed`` instead, naming the value, and a later identical job does
not reuse it.

**Reading** (``check_record``): what a report may trust of a results.json written long ago, copied, edited
or damaged. A record whose fields have the wrong shape (``"status": 3``, a dict where the job key belongs,
a completed record with no metrics, nesting deeper than any record the runner writes) becomes a *damaged*
run: the table shows it as a † row whose note names the file and what is wrong, and no number of it enters
a mean. A single metric that is not a finite number (text, a list, NaN) is left out of the means with a
note naming the file and the metric, while the run's other numbers count. Nothing is dropped silently.
"""

from __future__ import annotations

import math

DAMAGED = "damaged"  # the status a report gives a record it cannot trust
STATUSES = ("completed", "interrupted", "running", "failed")
MAX_DEPTH = 64  # the runner's records nest a dozen levels; far deeper is not one of its records
TEXT_FIELDS = ("job_key", "started", "finished")
DICT_FIELDS = ("config", "choices", "metrics", "error", "timings")


def _depth(value, limit: int) -> int:
    """How deep ``value`` nests dicts and lists, counted without recursion; stops counting past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            if level > limit:
                return deepest
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _split_metrics(metrics: dict) -> tuple[dict, list[str]]:
    """The metrics that are finite numbers or null, and a line for each other value (text, a list, NaN, inf)."""
    kept, bad = {}, []
    for row, values in metrics.items():
        if not isinstance(values, dict):
            bad.append(f"metrics.{row} is {_show(values)}, not a mapping of metric to value")
            continue
        kept[row] = {}
        for name, value in values.items():
            if value is None or _finite(value):
                kept[row][name] = value
            else:
                bad.append(f"metrics.{row}.{name} is {_show(value)}, not a finite number")
    return kept, bad


def _show(value) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def check_record(data: dict) -> dict:
    """``data`` (a parsed results.json object) as the report may use it.

    A record with a damaged field comes back with ``status`` ``damaged``, the field dropped and
    ``_problems`` saying what was wrong; a completed record with some non-numeric metric values
    comes back with those values removed and ``_left_out`` naming them.
    """
    if not data:  # {}: a job that stopped before writing anything, shown as a run without fields
        return data
    problems = []
    depth = _depth(data, MAX_DEPTH)
    if depth > MAX_DEPTH:
        problems.append(f"nested deeper than {MAX_DEPTH} levels")
        data = {k: v for k, v in data.items() if not isinstance(v, (dict, list))}
    status = data.get("status")
    if status not in STATUSES:
        problems.append(
            "no status" if status is None else f"status is {_show(status)}, not one of {', '.join(STATUSES)}"
        )
    for name in TEXT_FIELDS:
        if name in data and data[name] is not None and not isinstance(data[name], str):
            problems.append(f"{name} is {_show(data[name])}, not text")
            data = {k: v for k, v in data.items() if k != name}
    for name in DICT_FIELDS:
        if name in data and data[name] is not None and not isinstance(data[name], dict):
            problems.append(f"{name} is {_show(data[name])}, not a mapping")
            data = {k: v for k, v in data.items() if k != name}
    seed = (data.get("config") or {}).get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        problems.append(f"config.seed is {_show(seed)}, not a whole number")
    left_out = []
    if status == "completed" and not problems:
        metrics = data.get("metrics") or {}
        if not any(isinstance(v, dict) and v for v in metrics.values()):
            problems.append("a completed record without metrics")
        else:
            kept, left_out = _split_metrics(metrics)
            data = {**data, "metrics": kept}
    if problems:
        return {**data, "status": DAMAGED, "_problems": problems}
    return {**data, "_left_out": left_out} if left_out else data


# ---- the writer's gate ----------------------------------------------------------------------------
def metric_problems(metrics, null_reasons: dict | None = None, prefix: str = "metrics", _path: str = "") -> list[str]:
    """One line per metric that is not a finite number or an explained null; empty when the record is sound.
    ``null_reasons`` is keyed by the metric's path below ``metrics`` (``"unlearned.judge"``)."""
    null_reasons = null_reasons or {}
    if not isinstance(metrics, dict):
        return [f"{prefix} is {type(metrics).__name__}, not a table of metrics"]
    problems = []
    for name, value in metrics.items():
        where, path = f"{prefix}.{name}", f"{_path}{name}"
        if isinstance(value, dict):
            problems += metric_problems(value, null_reasons, where, f"{path}.")
        elif value is None:
            reason = null_reasons.get(path)
            if not (isinstance(reason, str) and reason.strip()):
                problems.append(f"{where} is null with no reason recorded")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where} is {_short(value)} ({type(value).__name__}), not a number")
        elif not math.isfinite(value):
            problems.append(f"{where} is {value}, not a finite number")
    return problems


def explain_nulls(metrics, prefix: str = "") -> dict[str, str]:
    """``{"<row>.<name>": reason}`` for every null metric whose spec says why it can be null
    (``MetricSpec.when_null``, runner/output/metrics.py); the record keeps them in ``null_metrics``."""
    from runner.output.metrics import null_reason

    found = {}
    for name, value in (metrics or {}).items() if isinstance(metrics, dict) else ():
        where = f"{prefix}{name}"
        if isinstance(value, dict):
            found |= explain_nulls(value, f"{where}.")
        elif value is None and null_reason(str(name)):
            found[where] = null_reason(str(name))
    return found


def record_problems(record) -> list[str]:
    """What keeps a ``completed`` record from being trusted (empty when it can be reused)."""
    if not isinstance(record, dict):
        return ["the record is not a JSON object"]
    reasons = record.get("null_metrics") or {}
    if not isinstance(reasons, dict):
        return ["null_metrics is not a table of reasons"]
    if "metrics" not in record:
        return ["it has no metrics"]
    return metric_problems(record["metrics"], reasons)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
