"""The runs a report reads: the results.json files under some run or sweep directories, one per job.

``runs_frame`` lays them out as a pandas DataFrame, one row per run and one column per dotted key
of the record (``status``, ``choices.method``, ``config.coreset.ratio``, ``metrics.unlearned.forget_prob``,
``timings.unlearn`` ...): the table and the plots both group and aggregate that frame.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from runner.errors import ConfigError
from runner.output.record import flatten
from runner.output.record_check import DAMAGED, check_record

log = logging.getLogger(__name__)
STATUS_ORDER = {"completed": 0, "interrupted": 1, "running": 2, "failed": 3, DAMAGED: 4}
# a record's bulky lists are no table's business (the plots read them from the runs themselves)
NOT_IN_FRAME = ("per_example",)


def find_results(paths: list[str | Path]) -> list[Path]:
    """Every results.json under the given directories (or the files themselves), sorted."""
    found = set()
    for p in map(Path, paths):
        if p.is_file() and p.name == "results.json":
            found.add(p.resolve())
        elif p.is_dir():
            found.update(f.resolve() for f in p.rglob("results.json"))
        else:
            raise ConfigError("report inputs", f"{p} is neither a directory nor a results.json", "pass run dirs")
    return sorted(found)


def load_runs(paths: list[str | Path]) -> list[dict]:
    """The runs found, one per job: reruns of one job (same job_key) keep the most complete record.

    Each run is its record plus ``_path``, the file it came from, as ``record_check`` lets a report
    use it; an unreadable file is skipped with a warning naming it.
    """
    by_key: dict[str, dict] = {}
    for path in find_results(paths):
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            # RecursionError: JSON nested deeper than the parser follows
            log.warning(
                "skipping unreadable %s: %s", path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            )
            continue
        if not isinstance(data, dict):
            log.warning(
                "skipping %s: it holds %s, not a run record", path, "null" if data is None else type(data).__name__
            )
            continue
        data = check_record(data)
        for problem in data.get("_problems", []):
            log.warning("damaged record %s: %s (a † row in the table)", path, problem)
        for problem in data.get("_left_out", []):
            log.warning("%s: %s; left out of the means", path, problem)
        data["_path"] = str(path)
        key = data.get("job_key") or str(path)
        old = by_key.get(key)
        if old is None or _better(data, old):
            by_key[key] = data
    return list(by_key.values())


def _better(new: dict, old: dict) -> bool:
    """Completed beats unfinished beats failed; between equals, the later record (ISO stamps sort as text)."""
    rank_new, rank_old = STATUS_ORDER.get(new.get("status"), 9), STATUS_ORDER.get(old.get("status"), 9)
    if rank_new != rank_old:
        return rank_new < rank_old
    return (new.get("finished") or new.get("started") or "") > (old.get("finished") or old.get("started") or "")


def lookup(run: dict, key: str):
    """A dotted key into a run's record (``choices.method``, ``config.coreset.ratio``, ``attack.task_after``)."""
    node = run
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def runs_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per run (in the order of ``runs``), one column per dotted key of the records."""
    flat = [flatten({k: v for k, v in run.items() if k not in NOT_IN_FRAME}) for run in runs]
    return pd.DataFrame(flat, index=pd.RangeIndex(len(runs)))


def number(value) -> float:
    """A finite number as float; NaN for anything else (missing, a flag, text, inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    value = float(value)
    return value if value == value and abs(value) != float("inf") else float("nan")
