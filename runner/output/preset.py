"""A report preset (``conf/report/<name>.yaml``, with ``key=value`` overrides) and its columns.

A preset chooses which runs form a row (``rows``), which numbers are columns and how they are shown
(``scale``, ``format``, ``unit``), the reference rows and the plots. What a metric is called and
which way is better come from ``runner.output.metrics``, not from the preset; a ``{key: ...}`` column
of a number nobody declared (``timings.unlearn``) gives its own ``label`` and ``direction``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from runner.errors import ConfigError
from runner.output.frame import lookup, number
from runner.output.metrics import ARROWS, spec

PRESETS_DIR = Path(__file__).resolve().parents[2] / "conf" / "report"


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
        return ARROWS[self.direction]

    @property
    def header(self) -> str:
        return f"{self.label} {self.arrow}".strip()

    def source(self, model_row: str) -> str:
        """The dotted key (a column of the runs' frame) this column reads for ``model_row``."""
        return f"metrics.{model_row}.{self.metric}" if self.metric else self.key

    def value(self, run: dict, model_row: str) -> float | None:
        """This column's (scaled) number in one run; None where the run has none."""
        raw = number(lookup(run, self.source(model_row)))
        return None if math.isnan(raw) else raw * self.scale

    def values(self, frame: pd.DataFrame, model_row: str) -> pd.Series:
        """This column's (scaled) number in every run of ``frame``; NaN where a run has none."""
        name = self.source(model_row)
        if name not in frame:
            return pd.Series(float("nan"), index=frame.index)
        return frame[name].map(number).astype(float) * self.scale


def load_preset(name: str, overrides: list[str] = ()) -> dict:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        options = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
        raise ConfigError("report", f"no preset `{name}`", f"choose one of: {options}")
    cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides)))
    return OmegaConf.to_container(cfg, resolve=True)


def parse_columns(specs: list) -> list[Column]:
    """The preset's ``columns``: a name (``forget_prob``: a metric, headed by its name; ``attack.task_after``:
    a dotted key) or a mapping (``{metric: forget_prob, format: .2e}``, headed by the metric's label)."""
    columns = []
    for item in specs or []:
        shorthand = isinstance(item, str)
        if shorthand:
            item = {"key": item} if "." in item else {"metric": item}
        if not item.get("metric") and not item.get("key"):
            raise ConfigError("report.columns", f"{item} names neither `metric` nor `key`", "add metric: <name>")
        ident = item.get("metric") or item["key"]
        declared = spec(ident)
        if declared is not None and ("label" in item or "direction" in item):
            raise ConfigError(
                f"report.columns.{ident}",
                "a declared metric's label and direction come from runner/output/metrics.py",
                "drop `label` and `direction` here, or change the metric's spec there",
            )
        direction = declared.direction if declared else item.get("direction") or "none"
        if direction not in ARROWS:
            raise ConfigError(f"report.columns.{ident}.direction", f"`{direction}` unknown", "use up, down or zero")
        label = ident if shorthand or not declared else declared.label  # a name typed as a name shows as typed
        label = item.get("label") or label
        if item.get("unit"):
            label += f" ({item['unit']})"
        columns.append(
            Column(
                id=ident,
                label=label,
                direction=direction,
                metric=item.get("metric"),
                key=item.get("key"),
                fmt=item.get("format") or ".3f",
                scale=float(item.get("scale", 1.0)),
            )
        )
    return columns
