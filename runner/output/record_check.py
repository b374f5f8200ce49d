"""The gate a record passes before it may say ``completed``: every metric a finite number or an explicit null.

``metrics`` is ``{row: {name: value}}`` (rows may nest). A value is accepted when it is a finite int or
float (a bool is not a number here), or ``None`` with a reason in the record's ``null_metrics``
(``{"<row>.<name>": "why there is no number"}``). Anything else (a string, a list, NaN, infinity, a null
nobody explained) means the numbers did not come from a sound computation, typically a damaged cache
entry: the job is then ``failed`` instead, naming the value, and a later identical job does not reuse it.
"""

from __future__ import annotations

import math


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
