"""The robustness battery's part of a report (preset key ``sections: [robustness]``, ``report=robustness``).

Writes ``<stem>_battery.md`` / ``.csv``: per method (runs of the same method and coreset averaged: the
seeds) and attack setting, the forget ROUGE of the unlearned model without and with the attack,
the target's (and retain's) under the same attack, and the recovery (runner.robustness.stage); a
methods x attacks summary (the strongest setting's recovery); the GCG suffixes with their success;
and ``<stem>_recovery.png`` / ``.pdf``: recovery against attack strength, one panel per attack.
A fine-tuning attack (``finetune_attack``) joins as one more attack, read from the run's
``unlearned`` / ``attacked`` / ``target`` forget ROUGE.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from runner.robustness.stage import recovery

STRENGTH = {"quantize": "weight bits", "prefill": "answer tokens forced", "in_context": "examples (k)"}


def method_label(run: dict) -> str:
    """The method, and the coreset share where one was used (the coreset comparison's rows)."""
    choices, config = run.get("choices") or {}, run.get("config") or {}
    # a run started from Python (not the command line) has no Hydra choices: the method's module then (npo)
    target = (config.get("method") or {}).get("_target_", "?.?")
    label = str(choices.get("method") or target.split(".")[-2])
    ratio = (config.get("coreset") or {}).get("ratio")
    return (
        f"{label} (coreset {ratio:g})" if ratio is not None and choices.get("coreset") not in (None, "none") else label
    )


def battery_points(run: dict) -> list[dict]:
    """The run's points: the battery's, and its fine-tuning attack as one more."""
    points = [dict(p) for p in (run.get("robustness") or {}).get("points", [])]
    attack, metrics = run.get("attack"), run.get("metrics") or {}
    if attack and "attacked" in metrics:
        before = metrics["unlearned"].get("forget_rouge")
        after = metrics["attacked"].get("forget_rouge")
        target = (metrics.get("target") or {}).get("forget_rouge")
        steps = (attack.get("training") or {}).get("steps", 0)
        points.append(
            {
                "attack": f"finetune:{attack.get('name')}",
                "setting": f"{steps} steps",
                "strength": steps,
                "unlearned": before,
                "after": after,
                "target_after": target,  # the target model is not fine-tuned: its plain forget ROUGE
                "recovery": recovery(after, before, target) if None not in (after, before) else None,
            }
        )
    return points


def _mean(values) -> float:
    numbers = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return sum(numbers) / len(numbers) if numbers else float("nan")


def battery_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per method and attack setting, values averaged over the runs (seeds) that share them."""
    groups = defaultdict(list)
    for run in runs:
        for p in battery_points(run):
            groups[(method_label(run), p["attack"], p["setting"])].append(p)
    rows = []
    for (method, attack, setting), points in groups.items():
        rows.append(
            {
                "method": method,
                "attack": attack,
                "setting": setting,
                "strength": points[0]["strength"],
                "runs": len(points),
                **{k: _mean(p.get(k) for p in points) for k in ("unlearned", "after", "target_after", "retain_after")},
                "recovery": _mean(p.get("recovery") for p in points),
            }
        )
    return pd.DataFrame(rows)


def _cell(value: float, fmt: str = ".3f") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def robustness_section(runs: list[dict], target: Path, stem: str) -> list[Path]:
    runs = [r for r in runs if r.get("status") == "completed" and battery_points(r)]
    if not runs:
        return []
    frame = battery_frame(runs)
    md = target / f"{stem}_battery.md"
    csv = target / f"{stem}_battery.csv"
    frame.to_csv(csv, index=False)
    lines = [
        "# Robustness battery",
        "",
        "Forget ROUGE-L recall (TOFU forget questions); recovery = (after − unlearned) /",
    ]
    lines += ["(target under the same attack − unlearned): 0 nothing comes back, 1 as much as the target shows.", ""]
    suffixes = _suffixes(runs)
    lines += _summary(frame) + [""] + _detail(frame) + ([""] + suffixes if suffixes else [])
    md.write_text("\n".join(lines) + "\n")
    return [md, csv, *_plot(frame, target / f"{stem}_recovery")]


def _summary(frame: pd.DataFrame) -> list[str]:
    """Methods x attacks: the strongest setting's recovery (raw forget ROUGE after the attack in brackets)."""
    attacks = list(dict.fromkeys(frame["attack"]))
    lines = ["## Methods × attacks (strongest setting)", "", "| Method | " + " | ".join(attacks) + " |"]
    lines.append("|---|" + "---|" * len(attacks))
    for method, rows in frame.groupby("method", sort=False):
        cells = []
        for attack in attacks:
            sub = rows[rows["attack"] == attack]
            if sub.empty:
                cells.append("–")
                continue
            # quantization is strongest at the fewest bits; every other attack at its largest setting
            best = sub.loc[sub["strength"].idxmin() if attack.startswith("quantize") else sub["strength"].idxmax()]
            cells.append(f"{_cell(best['recovery'], '.2f')} ({_cell(best['after'])})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _detail(frame: pd.DataFrame) -> list[str]:
    lines = [
        "## Every setting",
        "",
        "| Method | Attack | Setting | Unlearned | After | Target after | Retain after | Recovery |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|")
    for _, r in frame.iterrows():
        values = [r["unlearned"], r["after"], r["target_after"], r["retain_after"]]
        lines.append(
            f"| {r['method']} | {r['attack']} | {r['setting']} | "
            + " | ".join(_cell(v) for v in values)
            + f" | {_cell(r['recovery'], '.2f')} |"
        )
    return lines


def _suffixes(runs: list[dict]) -> list[str]:
    """The GCG suffixes' table; none (no empty heading) when no run has a GCG point."""
    lines = []
    for run in runs:
        for p in battery_points(run):
            suffixes = p.get("suffixes") or []
            # each suffix's own success where recorded; a record from before that has only the mean
            values = p.get("suffix_values") or [p["after"]] * len(suffixes)
            for suffix, value in zip(suffixes, values, strict=True):
                text = suffix.replace("|", "\\|").replace("\n", "\\n")
                lines.append(
                    f"| {method_label(run)} | {p['attack']} | {p['setting']} | `{text}` | {_cell(value)} | "
                    f"{_cell(p.get('train_value'))} | {_cell(p['loss_start'], '.2f')} → {_cell(p['loss'], '.2f')} | "
                    f"{_cell(p['seconds_per_step'], '.2f')} |"
                )
    if not lines:
        return []
    header = "| Method | Attack | Setting | Suffix | Success (forget ROUGE) | Train ROUGE | Loss | s/step |"
    return ["## GCG suffixes", "", header, "|---|---|---|---|---|---|---|---|", *lines]


def _plot(frame: pd.DataFrame, stem: Path) -> list[Path]:
    attacks = list(dict.fromkeys(frame["attack"]))
    fig = Figure(figsize=(3.2 * len(attacks), 3.2), dpi=100)
    FigureCanvasAgg(fig)
    for i, attack in enumerate(attacks):
        ax = fig.add_subplot(1, len(attacks), i + 1)
        for method, rows in frame[frame["attack"] == attack].groupby("method", sort=False):
            rows = rows.sort_values("strength")
            ax.plot(rows["strength"], rows["recovery"], marker="o", label=method)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(attack)
        ax.set_xlabel(STRENGTH.get(attack, "GCG steps" if "gcg" in attack else "training steps"))
        if attack.startswith("quantize"):
            ax.invert_xaxis()  # fewer bits: a stronger attack, to the right
        if i == 0:
            ax.set_ylabel("recovery")
    fig.axes[-1].legend(fontsize="small")
    fig.tight_layout()
    files = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        fig.savefig(path)
        files.append(path)
    return files
