"""The compact console table printed at the end of a job: one column per model."""

from __future__ import annotations

ARROWS = {
    "forget_quality": "↑",
    "model_utility": "↑",
    "forget_prob": "↓",
    "forget_rouge": "↓",
    "forget_truth_ratio": "↑",
    "retain_prob": "↑",
    "retain_rouge": "↑",
    # WMDP / MMLU accuracies
    "wmdp_bio": "↓",
    "wmdp_cyber": "↓",
    "wmdp_chem": "↓",
    "mmlu": "↑",
    # MUSE
    "verbmem_forget": "↓",
    "knowmem_forget": "↓",
    "knowmem_retain": "↑",
    "privleak": "→0",
}


def metrics_table(columns: dict[str, dict[str, float]]) -> str:
    """Markdown table: metric rows, model columns (target / retain / unlearned)."""
    names = list(columns)
    rows = [k for k in next(iter(columns.values()))]
    header = "| metric | " + " | ".join(names) + " |"
    lines = [header, "|" + "---|" * (len(names) + 1)]
    for key in rows:
        label = f"{key} {ARROWS.get(key, '')}".strip()
        cells = [_fmt(columns[n].get(key)) for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if abs(v) != 0 and (abs(v) < 1e-3):
        return f"{v:.2e}"
    return f"{v:.4f}"
