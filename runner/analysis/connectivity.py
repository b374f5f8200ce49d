"""Mode connectivity (``analysis=connectivity``): the metrics along the straight line between two models.

The endpoints are two finished runs of the same base model (``analysis.runs=[A,B]``), or one run
and the model its unlearning started from (``analysis.runs=[RUN] analysis.against=start``: TOFU's
fine-tuned target, recorded in ``model/model.json`` at save time; the base itself where the
benchmark has no target). With ``against=start`` the start is t=0 and the run t=1.

Only the parameters either end saved (``model.json``'s ``trainable``) move; a name one end did not
save takes the base's value at that end, and every other parameter is the base's:

    theta(t) = (1 - t) * theta_A + t * theta_B,   t on an even grid of ``points`` values in [0, 1]

Each point is evaluated with run A's benchmark (rebuilt from its ``results.json``, with its eval
settings and precision); summary metrics that compare with other models (TOFU's Forget Quality
against the retain model) use run A's recorded evaluations of those models.

The **barrier** of a metric is the largest deviation of the curve m(t) from the straight line
l(t) = (1 - t) m(0) + t m(1) between its ends, in the metric's bad direction
(``runner.output.metrics.spec(name).direction``): for a metric better up, max_t (l(t) - m(t)); better
down, max_t (m(t) - l(t)); otherwise (closer to zero, neither, undeclared) max_t |m(t) - l(t)|. It is
never negative (the ends lie on the line); 0 means the path never does worse than the line (the two
ends are linearly connected for that metric). A deviation within float rounding of the line (1e-9 of the
metric's scale) counts as 0, so a flat curve shows 0 rather than 4e-17.

The ends are the runs' own models, whose evaluations their records already hold: with ``reuse_ends``
(default), t = 0 and t = 1 take them from the records (metrics and suites) instead of evaluating again,
where the end's run used run A's benchmark, eval, model and precision settings and the same reference
models (the ones Forget Quality compares with); ``connectivity.reused`` says which ends were taken.

results.json: ``metrics`` has one row per point (``t=0.00`` ...), ``evaluation`` their suites, and
``connectivity`` the endpoints, the grid, the seconds per point, the barrier per metric and the plot
(``connectivity.png`` in the run directory: metric vs t, one panel per metric, the line dashed).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from runner import distributed
from runner.analysis.base import Analysis
from runner.benchmarks.base import build_benchmark
from runner.cache import safetensors_problem
from runner.data.qa import PromptFormat
from runner.errors import ConfigError
from runner.models import load_model, model_identity
from runner.options import Range
from runner.output.metrics import spec
from runner.saved_model import DIRECTORY, STATE_FILE, load_run_model, read_run_json, saved_weights

log = logging.getLogger(__name__)
PLOT = "connectivity.png"
NOT_BASELINES = ("unlearned", "attacked")  # the rows a run evaluated after unlearning
SAME_EVALUATION = ("benchmark", "eval", "model", "precision")  # config an end's record must share with run A's
ROUNDING = 1e-9  # relative to the metric's scale: a deviation below it is float noise, not a barrier


def barrier(ts: list[float], values: list[float], direction: str) -> float:
    """The largest deviation of ``values`` (at ``ts``, ends first and last) from the straight line
    between the ends, in the bad direction of a metric whose better is ``direction`` (module docstring);
    nan where a value is not finite."""
    if any(not math.isfinite(v) for v in values):
        return math.nan
    t0, t1, m0, m1 = ts[0], ts[-1], values[0], values[-1]
    line = [m0 + (t - t0) / (t1 - t0) * (m1 - m0) for t in ts]
    if direction == "up":
        gaps = [lv - v for lv, v in zip(line, values, strict=True)]
    elif direction == "down":
        gaps = [v - lv for lv, v in zip(line, values, strict=True)]
    else:
        gaps = [abs(v - lv) for lv, v in zip(line, values, strict=True)]
    worst = max(gaps)
    return worst if worst > ROUNDING * max(1.0, *map(abs, values)) else 0.0


def grid(points: int) -> list[float]:
    return [i / (points - 1) for i in range(points)]


class Connectivity(Analysis):
    name = "connectivity"

    option_ranges = {"points": Range(low=2, whole=True, example="11 (both ends and 9 between)")}

    def __init__(self, runs=(), against: str | None = None, points: int = 11, reuse_ends: bool = True):
        self.runs = [Path(str(r)).expanduser().resolve() for r in (runs or [])]
        self.against, self.points = against, points
        if not isinstance(reuse_ends, bool):
            raise ConfigError("analysis.reuse_ends", f"must be true or false, got {reuse_ends!r}", "e.g. true")
        self.reuse_ends = reuse_ends
        if against not in (None, "start"):
            raise ConfigError("analysis.against", f"`{against}` is not a choice", "use null or start")
        wanted = 1 if against == "start" else 2
        if len(self.runs) != wanted:
            raise ConfigError(
                "analysis.runs",
                f"{len(self.runs)} run(s) given; "
                + ("against=start takes one run" if against else "two runs are the endpoints"),
                "analysis.runs=[RUN_A,RUN_B], or analysis.runs=[RUN] analysis.against=start",
            )

    # --- inputs -------------------------------------------------------------------------------

    def check(self) -> None:
        saved = [saved_weights(r, "analysis.runs") for r in self.runs]
        # a run answered by an identical finished job reads the weights (and results) of the run that made them
        self.runs, self.described = [w for w, _ in saved], [d for _, d in saved]
        self.results = [self._results(r) for r in self.runs]
        if len(self.described) == 2 and _identity(self.described[0]) != _identity(self.described[1]):
            raise ConfigError(
                "analysis.runs",
                f"the runs were unlearned from different base models: {_identity(self.described[0])} "
                f"({self.runs[0]}) and {_identity(self.described[1])} ({self.runs[1]})",
                "give two runs of the same base model (model=, model.trainable_layers)",
            )
        base_cfg = OmegaConf.create(self.described[0]["base"]["config"])
        try:
            now = model_identity(base_cfg)
        except (OSError, ConfigError) as exc:
            raise ConfigError("analysis.runs", f"the runs' base model is not available ({exc})", "install it") from exc
        if now != self.described[0]["base"]["identity"]:
            raise ConfigError(
                "analysis.runs",
                f"the base model has changed since the runs: {now} now, {self.described[0]['base']['identity']} then",
                "analyse runs of the base that is installed now",
            )
        if self.against == "start":
            start = self.described[0].get("start")
            if start is not None and not Path(start).is_file():
                raise ConfigError(
                    "analysis.against",
                    f"the model {self.runs[0]} started from ({start}) is no longer in the cache",
                    "rerun the job with the same cache (it rebuilds the target), or analyse two runs",
                )
            if start is not None and (problem := safetensors_problem(Path(start))):
                raise ConfigError(
                    "analysis.against",
                    f"the model {self.runs[0]} started from ({start}) is damaged ({problem})",
                    "rerun the job with the same cache (it rebuilds the target), or analyse two runs",
                )

    @staticmethod
    def _results(run: Path) -> dict:
        path = run / "results.json"
        result = read_run_json(path, "analysis.runs") if path.is_file() else {}
        if result.get("status") != "completed":
            raise ConfigError("analysis.runs", f"{run} is not a completed run ({path})", "analyse finished runs")
        result["_path"] = str(path)
        return result

    # --- the analysis -------------------------------------------------------------------------

    def run(self, record, run_dir: Path, cache_dir: Path) -> None:
        config = self.results[0]["config"]
        with record.stage("load_models"):
            model, tokenizer = load_model(OmegaConf.create(self.described[0]["base"]["config"]), cache_dir)
            model.to(distributed.device())
            params = dict(model.named_parameters())
            ends = [self._saved(r, d, cache_dir) for r, d in zip(self.runs, self.described, strict=True)]
            if self.against == "start":
                start = self.described[0].get("start")
                ends.insert(0, load_file(start) if start else {})
            names = sorted(set(ends[0]) | set(ends[1]))
            theta_a, theta_b = (
                {n: e.get(n, params[n]).detach().to(params[n].device).float().clone() for n in names} for e in ends
            )
        with record.stage("build_benchmark"):
            bench = build_benchmark(
                OmegaConf.create(config["benchmark"]),
                tokenizer,
                PromptFormat.from_cfg(OmegaConf.create(config["model"]["prompt"])),
            )
        eval_cfg, precision = OmegaConf.create(config["eval"]), config["precision"]
        recorded = self.results[0]
        baselines = {
            k: {"suites": v, "per_example": recorded.get("per_example", {}).get(k)}
            for k, v in recorded.get("evaluation", {}).items()
            if k not in NOT_BASELINES
        }
        rows, suites, seconds, ts = {}, {}, [], grid(self.points)
        ends_recorded = self._recorded_ends() if self.reuse_ends else {}
        with record.stage("interpolate"):
            for t in ts:
                began = time.perf_counter()
                label = f"t={t:.2f}"
                if t in ends_recorded:
                    rows[label], suites[label] = ends_recorded[t]["metrics"], ends_recorded[t]["suites"]
                    seconds.append(0.0)
                    log.info("connectivity %s: %s (recorded by %s)", label, rows[label], ends_recorded[t]["source"])
                    continue
                with torch.no_grad():
                    for n in names:
                        params[n].copy_(((1 - t) * theta_a[n] + t * theta_b[n]).to(params[n].dtype))
                evaluation = bench.evaluate(model, eval_cfg, precision)
                seconds.append(time.perf_counter() - began)
                rows[label] = bench.summarize(evaluation, baselines)
                suites[label] = evaluation["suites"]
                log.info("connectivity %s: %s (%.1f s)", label, rows[label], seconds[-1])
        metrics = [k for k, v in rows[f"t={ts[0]:.2f}"].items() if isinstance(v, (int, float))]
        curves = {m: [float(rows[f"t={t:.2f}"][m]) for t in ts] for m in metrics}
        barriers = {m: barrier(ts, curves[m], _direction(m)) for m in metrics}
        plot = write_plot(run_dir / PLOT, ts, curves, barriers)
        print(barrier_table(barriers))
        ends_named = ["start" if self.against == "start" else str(self.runs[0]), str(self.runs[-1])]
        record.data["metrics"] = rows
        record.data["evaluation"] = suites
        record.data[self.name] = {
            "endpoints": {"A (t=0)": ends_named[0], "B (t=1)": ends_named[1]},
            "start_model": self.described[0].get("start") if self.against == "start" else None,
            "parameters": names,
            "t": ts,
            "seconds_per_point": seconds,
            "mean_seconds_per_point": sum(seconds) / len(seconds),
            "barrier": barriers,
            "directions": {m: _direction(m) for m in metrics},
            "plot": str(plot),
            "reused": {f"t={t:.2f}": e["source"] for t, e in ends_recorded.items()},
        }

    def _recorded_ends(self) -> dict[float, dict]:
        """The ends whose evaluation a record already holds, by t: {"metrics", "suites", "source"}."""
        first = self.results[0]
        if self.against == "start":
            # t = 0 is the start: TOFU's target, run A's `target` row; the base itself is no row of the record
            start_row = "target" if self.described[0].get("start") is not None else None
            rows = [(first, start_row), (first, "unlearned")]
        else:
            rows = [(first, "unlearned"), (self.results[1], "unlearned")]
        ends = {}
        for t, (result, row) in zip((0.0, 1.0), rows, strict=True):
            metrics = (result.get("metrics") or {}).get(row)
            if (
                row
                and isinstance(metrics, dict)
                and row in result.get("evaluation", {})
                and self._evaluated_alike(result)
            ):
                source = f"{Path(result['_path']).parent} ({row})"
                ends[t] = {"metrics": metrics, "suites": result["evaluation"][row], "source": source}
        return ends

    def _evaluated_alike(self, result: dict) -> bool:
        """``result`` evaluated as run A's benchmark would now: same settings and the same reference models."""
        first = self.results[0]
        same = all(result.get("config", {}).get(k) == first.get("config", {}).get(k) for k in SAME_EVALUATION)
        references = {k: v for k, v in (first.get("evaluation") or {}).items() if k not in NOT_BASELINES}
        theirs = {k: v for k, v in (result.get("evaluation") or {}).items() if k not in NOT_BASELINES}
        return same and references == theirs

    @staticmethod
    def _saved(run: Path, described: dict, cache_dir: Path) -> dict:
        """The parameters ``run`` saved (``model.json``'s ``trainable``), by name."""
        if described["save_model"] == "trainable":
            return load_file(str(run / DIRECTORY / STATE_FILE))
        model, _ = load_run_model(run, cache_dir)  # full: the whole model; its changed parameters
        own = dict(model.named_parameters())
        return {n: own[n].detach().clone() for n in described["trainable"]}


def _identity(described: dict) -> dict:
    return described["base"]["identity"]


def _direction(metric: str) -> str:
    found = spec(metric)
    return found.direction if found else "none"


def barrier_table(barriers: dict[str, float]) -> str:
    """The barriers for the console: one metric a line, 0 where the path never does worse than the line."""
    width = max((len(m) for m in barriers), default=0)
    lines = ["barrier (worst deviation from the straight line, in the bad direction; 0: linearly connected)"]
    lines += [f"  {m:<{width}}  {_shown(v)}" for m, v in barriers.items()]
    return "\n".join(lines)


def _shown(value: float) -> str:
    return "nan" if math.isnan(value) else "0" if value == 0 else f"{value:.4g}"


def write_plot(path: Path, ts: list[float], curves: dict[str, list[float]], barriers: dict | None = None) -> Path:
    """metric vs t, one panel per metric, titled with its barrier; the straight line between the ends dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(1, len(curves))
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
    FigureCanvasAgg(fig)
    for i, (name, values) in enumerate(curves.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        found = spec(name)
        ax.plot(ts, values, marker="o", markersize=3, label="interpolated")
        ax.plot([ts[0], ts[-1]], [values[0], values[-1]], linestyle="--", color="grey", label="straight line")
        title = f"{found.label if found else name} {found.arrow if found else ''}".strip()
        if barriers and name in barriers:
            title += f"\nbarrier {_shown(barriers[name])}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("t")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
