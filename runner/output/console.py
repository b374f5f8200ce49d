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


def letters_table(letters: dict[str, dict[str, dict]]) -> str:
    """The answer letters each model picked, per multiple-choice suite, beside its accuracy."""
    lines = ["answer letters predicted (share of questions), beside accuracy:"]
    for row, suites in letters.items():
        for suite, d in suites.items():
            shares = " ".join(f"{k} {v / d['n']:.0%}" for k, v in d["counts"].items())
            acc = "" if d["accuracy"] is None else f"; accuracy {d['accuracy']:.3f}"
            lines.append(f"  {row} {suite}: {shares} (n={d['n']}{acc})")
    return "\n".join(lines)


def constant_letter_warnings(letters: dict[str, dict[str, dict]], share: float) -> list[str]:
    """One line per suite where a single letter takes more than ``share`` of the predictions."""
    out = []
    for row, suites in letters.items():
        for suite, d in suites.items():
            if d["top_share"] > share:
                letter, count = max(d["counts"].items(), key=lambda kv: kv[1])
                out.append(
                    f"{row} {suite}: the model answers {letter} to {count} of {d['n']} questions "
                    f"({d['top_share']:.0%}): its accuracy is that letter's share of the answers, "
                    "not a measure of knowledge"
                )
    return out
