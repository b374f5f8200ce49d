"""The compact console table printed at the end of a job: one row per metric, one column per model."""

from __future__ import annotations

from runner.output.metrics import arrow


def metrics_table(columns: dict[str, dict[str, float]]) -> str:
    """Markdown table: metric rows (name and arrow), model columns (target / retain / unlearned)."""
    names = list(columns)
    rows = list(next(iter(columns.values())))
    header = "| metric | " + " | ".join(names) + " |"
    lines = [header, "|" + "---|" * (len(names) + 1)]
    for key in rows:
        label = f"{key} {arrow(key)}".strip()
        cells = [_fmt(columns[n].get(key)) for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if abs(v) != 0 and (abs(v) < 1e-3):
        return f"{v:.2e}"
    return f"{v:.4f}"
