"""The report's figures (matplotlib, no display needed), each saved as PNG and PDF of a fixed size.

- ``pareto``: forget metric vs utility metric, one point per method (mean, with ± std bars),
  the seeds as faint dots, the reference models as stars, and the Pareto front of the methods;
- ``coreset_curve``: each metric vs the coreset ratio, one line per method with a ± std band;
- ``attack``: each metric before and after the fine-tuning attack, bars per method;
- ``reflection_frequency``: reasoning runs' reflection-token frequency by generated position (pooled
  over a row's runs, in bins of ``bin`` positions; the expected frequency as a line where the runs
  recorded probabilities, the counted one as dots), one panel per benchmark, with each decoding's
  logit offset (CyclicReflex's wave, TIP's constant) drawn over it on a second axis; log scale
  when the values span more than two decades (``logy: false`` to keep it linear).

A figure is ``plot.width`` x ``plot.height`` inches at ``plot.dpi`` (preset or per-plot keys), so its
PNG is exactly width*dpi x height*dpi pixels.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from runner.errors import ConfigError
from runner.output.table import Table, choice_label

SIZE = {"width": 6.4, "height": 4.0, "dpi": 100}


def draw(spec: dict, runs: list[dict], table: Table, preset: dict, stem: Path) -> list[Path]:
    kind = spec.get("kind")
    painters = {
        "pareto": _pareto,
        "coreset_curve": _coreset_curve,
        "attack": _attack,
        "reflection_frequency": _reflection_frequency,
    }
    if kind not in painters:
        raise ConfigError("report.plots.kind", f"`{kind}` unknown", f"use one of {', '.join(painters)}")
    size = {**SIZE, **(preset.get("plot") or {}), **{k: spec[k] for k in SIZE if k in spec}}
    fig = Figure(figsize=(size["width"], size["height"]), dpi=size["dpi"])
    FigureCanvasAgg(fig)
    painters[kind](fig, spec, table)
    fig.tight_layout()
    files = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        fig.savefig(path, dpi=size["dpi"], format=ext, metadata=_metadata(ext))
        files.append(path)
    return files


def _metadata(ext: str) -> dict:
    # no creation date: reruns of the report give identical files
    return {"CreationDate": None} if ext == "pdf" else {}


def _column(table, ident: str):
    for col in table.columns:
        if col.id == ident:
            return col
    raise ConfigError("report.plots", f"`{ident}` is not a column of this table", "name one of the preset's columns")


def _axis_label(col) -> str:
    return col.header


# ---------------------------------------------------------------- Pareto front


def pareto_front(points: list[tuple[float, float]], directions: tuple[str, str]) -> list[int]:
    """Indices of the points no other point dominates (at least as good on both axes, better on one)."""

    def goodness(v, d):  # larger is better
        return {"up": v, "down": -v, "zero": -abs(v)}.get(d, v)

    scored = [(goodness(x, directions[0]), goodness(y, directions[1])) for x, y in points]
    front = []
    for i, (a, b) in enumerate(scored):
        dominated = any(c >= a and d >= b and (c > a or d > b) for j, (c, d) in enumerate(scored) if j != i)
        if not dominated:
            front.append(i)
    return front


def _pareto(fig, spec: dict, table) -> None:
    cx, cy = _column(table, spec["x"]), _column(table, spec["y"])
    ax = fig.add_subplot(1, 1, 1)
    points, names = [], []
    for row in table.rows:
        mx, sx, _ = row.stats(cx)
        my, sy, _ = row.stats(cy)
        if mx is None or my is None:
            continue
        if row.kind == "reference":
            ax.scatter([mx], [my], marker="*", s=160, color="black", zorder=3)
            ax.annotate(row.label, (mx, my), textcoords="offset points", xytext=(6, 4), fontsize=8)
            continue
        pairs = [
            (cx.value(r, row.model_row), cy.value(r, row.model_row)) for r in row.runs if r.get("status") == "completed"
        ]
        seeds = [(x, y) for x, y in pairs if x is not None and y is not None]
        dots = ax.scatter([p[0] for p in seeds], [p[1] for p in seeds], alpha=0.25, s=12)
        ax.errorbar([mx], [my], xerr=[sx or 0], yerr=[sy or 0], fmt="o", color=dots.get_facecolor()[0], zorder=3)
        ax.annotate(row.label, (mx, my), textcoords="offset points", xytext=(6, -10), fontsize=8)
        points.append((mx, my))
        names.append(row.label)
    front = sorted(pareto_front(points, (cx.direction, cy.direction)), key=lambda i: points[i][0])
    if front:
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "--", color="gray", label="Pareto front")
        ax.legend(loc="best", fontsize=8)
    if spec.get("logx"):
        ax.set_xscale("log")
    ax.set_xlabel(_axis_label(cx))
    ax.set_ylabel(_axis_label(cy))
    ax.set_title(spec.get("title") or f"{table.title}: {cx.label} vs {cy.label}", fontsize=10)


# ---------------------------------------------------------------- metric vs coreset ratio

# what the x key of a ratio curve measures; another key is named by its own words (config.a.b_c -> "a b c")
RATIO_LABELS = {
    "config.coreset.ratio": "coreset ratio (share of the forget set)",
    "config.condense.ratio": "kept ratio (share of each trace's thoughts)",
}


def ratio_label(xkey: str) -> str:
    return RATIO_LABELS.get(xkey) or " ".join(xkey.removeprefix("config.").replace("_", " ").split("."))


def _coreset_curve(fig, spec: dict, table) -> None:
    xkey = spec.get("x", "config.coreset.ratio")
    metrics = [_column(table, m) for m in (spec.get("metrics") or [c.id for c in table.columns])]
    axes = [fig.add_subplot(1, len(metrics), i + 1) for i in range(len(metrics))]
    for ax, col in zip(axes, metrics, strict=True):
        series: dict[str, list] = {}
        for row in table.rows:
            if row.kind == "reference":
                mean, _, _ = row.stats(col)
                if mean is not None:
                    ax.axhline(mean, linestyle=":", color="gray", linewidth=1)
                    ax.annotate(row.label, (0, mean), xycoords=("axes fraction", "data"), fontsize=7, color="gray")
                continue
            if xkey not in row.keys:
                raise ConfigError("report.rows", f"the coreset plot needs `{xkey}` among the row keys", f"add {xkey}")
            name = ", ".join(choice_label(v) for k, v in row.keys.items() if k != xkey) or col.label
            mean, std, _ = row.stats(col)
            if mean is not None and row.keys[xkey] is not None:
                series.setdefault(name, []).append((float(row.keys[xkey]), mean, std or 0.0))
        for name, pts in series.items():
            pts.sort()
            xs, ms, ss = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
            (line,) = ax.plot(xs, ms, marker="o", label=name)
            low = [m - s for m, s in zip(ms, ss, strict=True)]
            high = [m + s for m, s in zip(ms, ss, strict=True)]
            ax.fill_between(xs, low, high, alpha=0.2, color=line.get_color())
        if spec.get("logx", True):
            ax.set_xscale("log")
        ticks = sorted({x for pts in series.values() for x, _, _ in pts})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])  # the ratios run, not powers of ten
        ax.minorticks_off()
        ax.set_xlabel(spec.get("xlabel") or ratio_label(xkey))
        ax.set_title(_axis_label(col), fontsize=9)
    if axes and axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)


# ---------------------------------------------------------------- before / after attack


def _attack(fig, spec: dict, table) -> None:
    before, after = spec.get("before", "unlearned"), spec.get("after", "attacked")
    metrics = [_column(table, m) for m in (spec.get("metrics") or [c.id for c in table.columns])]
    axes = [fig.add_subplot(1, len(metrics), i + 1) for i in range(len(metrics))]
    groups: dict[tuple, dict] = {}
    for row in table.rows:
        if row.kind == "method" and row.model_row in (before, after):
            groups.setdefault(tuple(row.keys.items()), {})[row.model_row] = row
    names = [", ".join(choice_label(v) for _, v in key) for key in groups]
    width = 0.38
    for ax, col in zip(axes, metrics, strict=True):
        for offset, stage, label in ((-width / 2, before, "before attack"), (width / 2, after, "after attack")):
            stats = [g[stage].stats(col) if stage in g else (None, None, 0) for g in groups.values()]
            xs = [i + offset for i in range(len(groups))]
            heights = [m if m is not None else 0.0 for m, _, _ in stats]
            errs = [s or 0.0 for _, s, _ in stats]
            ax.bar(xs, heights, width, yerr=errs, capsize=3, label=label)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(names, rotation=30, fontsize=7)
        ax.set_title(_axis_label(col), fontsize=9)
    if axes:
        axes[0].legend(fontsize=7)


# ---------------------------------------------------------------- reflection tokens by position


def _reflection_frequency(fig, spec: dict, table) -> None:
    import numpy as np

    from runner.decoding.processors import triangular_wave
    from runner.metrics.reasoning import frequency_by_position

    width = int(spec.get("bin", 10))
    panels: dict[str, list] = {}  # benchmark -> [(row label, positions, lengths, mass, count, decoding config)]
    for row in table.rows:
        positions, lengths, mass, count, decoding = [], [], None, None, None
        for run in row.runs:
            if run.get("status") != "completed":
                continue
            for suite in ((run.get("per_example") or {}).get(row.model_row) or {}).values():
                if isinstance(suite, dict) and "reflection_positions" in suite:
                    positions += suite["reflection_positions"]
                    lengths += suite["length"]
            for agg in ((run.get("evaluation") or {}).get(row.model_row) or {}).values():
                prob = agg.get("reflection_probability") if isinstance(agg, dict) else None
                if prob:
                    mass, count = _add(mass, prob["mass"]), _add(count, prob["count"])
            decoding = decoding or (run.get("config") or {}).get("decoding")
        if lengths:
            bench = str(((row.runs[0].get("config") or {}).get("benchmark") or {}).get("name", ""))
            panels.setdefault(bench, []).append((row.label, positions, lengths, mass, count, decoding or {}))
    if not panels:
        raise ConfigError("report.plots", "no run records reflection positions", "report reasoning benchmark runs")
    for k, (bench, lines) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), k + 1)
        offsets = ax.twinx()
        horizon = max(max(line[2]) for line in lines)
        t = np.arange(horizon)
        drawn, values = set(), []
        for label, positions, lengths, mass, count, decoding in lines:
            starts, freq = frequency_by_position(positions, lengths, width)
            centres = starts + width / 2
            if not np.nansum(freq) and (mass is None or not np.sum(mass)):
                label += " (none)"  # nothing to draw on a log scale: say so in the legend
            if mass is not None:  # expected frequency (solid), counted frequency (dots)
                binned = np.add.reduceat(mass, starts[starts < len(mass)]) / np.maximum(
                    np.add.reduceat(count, starts[starts < len(count)]), 1e-12
                )
                (line,) = ax.plot(centres[: len(binned)], binned * 100, label=label, linewidth=1.2)
                ax.plot(centres, freq * 100, linestyle="none", marker=".", markersize=3, color=line.get_color())
                values += list(binned[binned > 0] * 100)
            else:
                (line,) = ax.plot(centres, freq * 100, label=label, linewidth=1.2)
            values += list(freq[freq > 0] * 100)
            lo, hi = (decoding.get("window") or [0, horizon])[:2]
            inside = (t >= lo) & (t < hi)
            if "amplitude" in decoding and "period" in decoding:
                wave = triangular_wave(t, decoding["amplitude"], decoding["period"], decoding.get("shift", 0.0))
                offset = np.where(inside, wave, np.nan)
            elif "delta" in decoding:
                offset = np.where(inside, float(decoding["delta"]), np.nan)
            else:
                continue
            key = (decoding.get("name"), tuple(np.nan_to_num(offset).round(3)))
            if key not in drawn:
                drawn.add(key)
                offsets.plot(t, offset, linestyle="--", color=line.get_color(), alpha=0.6, linewidth=1)
        if values and spec.get("logy", "auto") in ("auto", True) and max(values) / min(values) > 100:
            ax.set_yscale("log")  # rare reflections next to boosted ones: decades apart
        offsets.axhline(0.0, color="gray", linewidth=0.5, linestyle=":")
        offsets.set_ylabel("logit offset (dashed)", fontsize=8)
        ax.set_xlabel("generated position")
        ax.set_ylabel(f"reflection tokens, % (bins of {width})", fontsize=8)
        ax.set_title(spec.get("title") or choice_label(bench), fontsize=10)
        ax.legend(fontsize=7, loc="lower left")


def _add(total, values):
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    if total is None:
        return values
    width = max(len(total), len(values))
    return np.pad(total, (0, width - len(total))) + np.pad(values, (0, width - len(values)))
