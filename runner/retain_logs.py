"""A retain model's evaluation read from a file (``benchmark.retain_logs``) instead of a retain model.

Forget Quality needs the retain model's per-row forget truth ratios, PrivLeak its Min-K% membership
AUC; both are in the evaluation file a retain model leaves behind, so a job given one loads and
scores no retain model. Two formats are read, told apart by their keys:

- **open-unlearning** (``TOFU_EVAL.json`` / ``MUSE_EVAL.json`` of ``src/eval.py``): one key per
  metric, e.g. ``"forget_truth_ratio": {"agg_value": x, "value_by_index": {"0": {"score": r}, ...}}``
  and ``"mia_min_k": {"agg_value": auc, ...}`` (open-unlearning's forget 0 / holdout 1 AUC). The
  truth ratios are P_false / P_true per row, as ours; the indices are the split's row positions.
- **this runner**: a job's ``results.json`` (the ``retain`` row of an unlearning job, else the
  ``evaluated`` row of an evaluation-only job of the retain model) or a cached evaluation
  (``{"suites": ..., "per_example": ...}``): ``per_example.forget.truth_ratio`` and, where present,
  ``suites.mia.min_k`` (TOFU; open-unlearning's orientation) and ``suites.privleak.auc`` (MUSE,
  whose AUC is oriented the other way: 1 - open-unlearning's).

A TOFU log must hold one truth ratio per row of the job's forget split (40 / 200 / 400 for
forget01 / 05 / 10), or exactly the rows a ``subset.forget`` evaluates; the first rows are used.
Every other shape is refused at config check with one error naming ``benchmark.retain_logs``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ConfigError

KEY = "benchmark.retain_logs"
TOFU_FORGET_ROWS = {"forget01": 40, "forget05": 200, "forget10": 400}
# keys only one benchmark's open-unlearning log has: a log of the other benchmark is refused by them
OU_ONLY = {
    "tofu": ("forget_truth_ratio", "forget_Q_A_Prob", "model_utility"),
    "muse": ("forget_verbmem_ROUGE", "forget_knowmem_ROUGE"),
}
RUNNER_ROWS = ("retain", "evaluated")


@dataclass(frozen=True)
class RetainLog:
    path: str
    format: str  # open-unlearning | runner
    forget_truth_ratio: list[float] | None  # TOFU: per forget row evaluated, in row order
    min_k_auc: float | None  # Min-K% membership AUC, open-unlearning's orientation (forget 0, holdout 1)

    def baseline(self) -> dict:
        """The log shaped as the retain model's evaluation (``baselines["retain"]`` of ``summarize``):
        ``per_example.forget.truth_ratio`` and ``suites.mia.min_k`` (where TOFU's membership-inference
        suite records the Min-K% AUC), so whatever reads a retain model's numbers reads the log's."""
        out = {"suites": {}, "per_example": {}}
        if self.forget_truth_ratio is not None:
            out["per_example"]["forget"] = {"truth_ratio": list(self.forget_truth_ratio)}
        if self.min_k_auc is not None:
            out["suites"]["mia"] = {"min_k": self.min_k_auc}
        return out

    def muse_auc(self) -> float | None:
        """The AUC in MUSE's orientation (runner/metrics/muse.py: P(score(forget) > score(holdout)))."""
        return None if self.min_k_auc is None else 1.0 - self.min_k_auc


def _bad(
    path: str, problem: str, fix: str = "give the evaluation file of the retain model for this split"
) -> ConfigError:
    return ConfigError(KEY, f"{path}: {problem}", fix)


def read_retain_logs(path: str, bench_cfg) -> RetainLog:
    """The retain model's numbers from ``path`` for the benchmark ``bench_cfg`` describes; refused, named, if unusable."""
    name = str(bench_cfg.get("name"))
    if name not in ("tofu", "muse"):
        raise ConfigError(KEY, f"benchmark={name} takes no retain log", "set benchmark.retain_logs=null")
    file = Path(path).expanduser()
    try:
        data = json.loads(file.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise _bad(path, "no such file", "give the path of TOFU_EVAL.json / MUSE_EVAL.json or a results.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(path, f"not readable as JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise _bad(path, f"holds a JSON {type(data).__name__}, not an evaluation object")
    if any(k in data for k in ("per_example", "suites", "metrics")):  # a record or a cached evaluation
        return _from_runner(path, data, name, bench_cfg)
    return _from_open_unlearning(path, data, name, bench_cfg)


def _rows_expected(path: str, bench_cfg) -> tuple[int, int]:
    """(rows of the whole forget split, rows this job evaluates)."""
    split = str(bench_cfg.get("forget_split"))
    if split not in TOFU_FORGET_ROWS:
        raise _bad(path, f"TOFU forget split `{split}` has no known size", "use forget01, forget05 or forget10")
    full = TOFU_FORGET_ROWS[split]
    subset = bench_cfg.get("subset")
    n = subset.get("forget") if subset is not None else None
    return full, full if n is None else min(int(n), full)


def _truth_ratios(path: str, values: list, bench_cfg, where: str) -> list[float]:
    full, evaluated = _rows_expected(path, bench_cfg)
    if len(values) not in (full, evaluated):
        sizes = f"{full}" if full == evaluated else f"{full} (the whole split) or {evaluated} (subset.forget)"
        raise _bad(
            path,
            f"{where} holds {len(values)} truth ratios but {bench_cfg.get('forget_split')} needs {sizes}: "
            "a log of another forget split",
        )
    out = []
    for i, v in enumerate(values[:evaluated]):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise _bad(path, f"{where} row {i} is {v!r}, not a truth ratio (a finite number >= 0)")
        out.append(float(v))
    return out


def _auc(path: str, value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise _bad(path, f"{where} is {value!r}, not an AUC between 0 and 1")
    return float(value)


def _from_open_unlearning(path: str, data: dict, name: str, bench_cfg) -> RetainLog:
    other = "muse" if name == "tofu" else "tofu"
    foreign = [k for k in OU_ONLY[other] if k in data]
    if foreign:
        raise _bad(
            path, f"is an open-unlearning {other.upper()} log (it has `{foreign[0]}`), and this job runs {name.upper()}"
        )
    auc = None
    if "mia_min_k" in data:
        entry = data["mia_min_k"]
        if not isinstance(entry, dict) or "agg_value" not in entry:
            raise _bad(path, "`mia_min_k` has no `agg_value` (open-unlearning's Min-K% AUC)")
        auc = _auc(path, entry["agg_value"], "mia_min_k.agg_value")
    ratios = None
    if name == "tofu":
        entry = data.get("forget_truth_ratio")
        by_index = entry.get("value_by_index") if isinstance(entry, dict) else None
        if not isinstance(by_index, dict) or not by_index:
            raise _bad(
                path,
                "has no `forget_truth_ratio.value_by_index` (the retain model's per-row truth ratios Forget Quality "
                "needs; neither is it a results.json of this runner)",
            )
        try:
            order = sorted(by_index, key=int)
        except ValueError:
            raise _bad(path, "`forget_truth_ratio.value_by_index` keys are not row indices") from None
        if [int(k) for k in order] != list(range(len(order))):
            raise _bad(path, "`forget_truth_ratio.value_by_index` skips row indices (rows without a truth ratio)")
        scores = [by_index[k].get("score") if isinstance(by_index[k], dict) else None for k in order]
        ratios = _truth_ratios(path, scores, bench_cfg, "forget_truth_ratio.value_by_index")
    elif auc is None:
        raise _bad(path, "has no `mia_min_k.agg_value` (the retain model's Min-K% AUC PrivLeak needs)")
    return RetainLog(path, "open-unlearning", ratios, auc)


def _from_runner(path: str, data: dict, name: str, bench_cfg) -> RetainLog:
    suites, per = data.get("suites"), data.get("per_example")
    if "metrics" in data:  # a results.json: the retain model's row
        row = next((r for r in RUNNER_ROWS if r in (data.get("evaluation") or {})), None)
        if row is None:
            raise _bad(path, f"a results.json without a `{RUNNER_ROWS[0]}` or `{RUNNER_ROWS[1]}` row")
        logged = ((data.get("config") or {}).get("benchmark") or {}).get("name")
        if logged is not None and logged != name:
            raise _bad(path, f"is a {logged} job's record, and this job runs {name}")
        split = ((data.get("config") or {}).get("benchmark") or {}).get("forget_split")
        if name == "tofu" and split is not None and split != bench_cfg.get("forget_split"):
            raise _bad(
                path, f"is a record of forget split {split}, and this job forgets {bench_cfg.get('forget_split')}"
            )
        suites, per = data["evaluation"][row], (data.get("per_example") or {}).get(row)
    if name == "tofu":
        values = ((per or {}).get("forget") or {}).get("truth_ratio")
        if not isinstance(values, list):
            raise _bad(path, "has no per_example forget truth_ratio (a record saved without per-example values?)")
        auc = ((suites or {}).get("mia") or {}).get("min_k")  # TOFU's privacy suite, where the record has one
        auc = None if auc is None else _auc(path, auc, "mia.min_k")
        return RetainLog(path, "runner", _truth_ratios(path, values, bench_cfg, "per_example.forget.truth_ratio"), auc)
    auc = ((suites or {}).get("privleak") or {}).get("auc")
    if auc is None:
        raise _bad(path, "has no suites.privleak.auc (the retain model's Min-K% AUC)")
    return RetainLog(path, "runner", None, 1.0 - _auc(path, auc, "privleak.auc"))
