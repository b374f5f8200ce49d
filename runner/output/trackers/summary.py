"""What of a results.json record a tracker sends at the end: the summary scalars and per-example rows."""

from __future__ import annotations

from runner.output.metrics import spec
from runner.output.record import flatten


def summary_of(results: dict) -> dict:
    """The scalars of a results.json worth a run summary: metrics per model, status, timings, stage stats."""
    summary = {"status": results.get("status", "unknown")}
    for row, metrics in (results.get("metrics") or {}).items():
        for metric, value in (metrics or {}).items():
            summary[f"{row}/{metric}"] = value
    for block in ("timings", "training", "coreset", "attack"):
        for key, value in flatten(results.get(block) or {}, block, "/").items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                summary[key] = value
    if results.get("error"):
        summary["error"] = str(results["error"].get("message", ""))[:500]
    return summary


def per_example_rows(per_example: dict) -> tuple[list[str], list[list]]:
    """One row per (model, suite, example): the per-example values of each model, as table columns."""
    metrics: list[str] = []
    rows = []
    for model, suites in (per_example or {}).items():
        for suite, values in (suites or {}).items():
            if not isinstance(values, dict):
                continue
            lists = {k: v for k, v in values.items() if isinstance(v, list)}
            n = max((len(v) for v in lists.values()), default=0)
            for k in lists:
                if k not in metrics:
                    metrics.append(k)
            for i in range(n):
                rows.append((model, suite, i, {k: v[i] for k, v in lists.items() if i < len(v)}))
    columns = ["model", "suite", "index", *metrics]
    return columns, [[m, s, i, *[vals.get(k) for k in metrics]] for m, s, i, vals in rows]


def metric_rows(metrics: dict[str, dict]) -> tuple[list[str], list[list]]:
    """The final metrics as a table: one row per metric with its label and arrow, one column per model."""
    models = list(metrics or {})
    names = list(dict.fromkeys(name for model in models for name in metrics[model] or {}))
    columns = ["metric", "label", "better", *models]
    rows = []
    for name in names:
        declared = spec(name)
        label, arrow = (declared.label, declared.arrow) if declared else (name, "")
        rows.append([name, label, arrow, *[(metrics[m] or {}).get(name) for m in models]])
    return columns, rows
