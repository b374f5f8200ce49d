"""What every cache read must hold before it is trusted: one schema per kind of entry, checked on every read.

A cache file can have the right shape and still be wrong: a hand edit, a bit flip that still parses, a
marker from an older version, an entry built for other inputs with its checksums rewritten. Each reader
states what it expects (types from a pydantic schema, counts that must match what the entry was built
for) and gets back either the value or one line saying what is wrong; the caller then treats the entry
as corrupt: it is set aside (kept for inspection), rebuilt, and the problem is logged once.

The kinds (``runner/cache.py`` and its users):
- ``MARKER``: an entry's ``COMPLETE`` file, ``{"files": {name: [size, sha256]}}`` (or the older ``ok``);
- ``JOB_INDEX``: ``jobs/<key>.json``, ``{"results": "<path of the finished job's results.json>"}``;
- ``TRACES``: R²MU's ``traces.json``, one continuation (token ids) per forget document;
- ``RESPONSES``: an analysis' generated responses, one per prompt;
- evaluations (``evaluation_problem``): the suites' aggregates and per-example values, checked by what
  the record would take from them (``runner/output/record_check.py``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter, ValidationError

log = logging.getLogger(__name__)

Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
Size = Annotated[StrictInt, Field(ge=0)]
TokenId = Annotated[StrictInt, Field(ge=0)]


class _Strict(BaseModel):
    # scalars are Strict* types (no "12" for 12); containers lax, so a JSON list may stand for a pair
    model_config = ConfigDict(extra="allow")


class Marker(_Strict):
    files: dict[str, tuple[Size, Sha256]]


class JobIndex(_Strict):
    results: Annotated[StrictStr, Field(min_length=1)]


class Traces(_Strict):
    continuations: list[list[TokenId]]


class Response(_Strict):
    ids: list[TokenId]
    text: StrictStr


class Responses(_Strict):
    responses: list[Response]
    stats: dict[str, Any]


class Evaluation(_Strict):
    suites: dict[str, dict[str, Any]]  # suite -> aggregate name -> value (numbers mostly; checked by what they yield)
    per_example: dict[str, dict[str, list]]  # suite -> field -> one value per example


MARKER = TypeAdapter(Marker)
JOB_INDEX = TypeAdapter(JobIndex)
TRACES = TypeAdapter(Traces)
RESPONSES = TypeAdapter(Responses)
EVALUATION = TypeAdapter(Evaluation)


def schema_problem(value, adapter: TypeAdapter) -> str | None:
    """None when ``value`` fits ``adapter``'s schema, else the first mismatch in one line (``files.x: ...``)."""
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the top level"
        return f"{where}: {first['msg'].lower()} (got {_short(first.get('input'))})"
    return None


def count_problem(what: str, found: int, expected: int) -> str | None:
    """An entry built for ``expected`` items holds ``found``: it belongs to other inputs, or lost some."""
    return None if found == expected else f"holds {found} {what}, {expected} were asked for"


def read_json(path: Path) -> tuple[Any, str | None]:
    """(the parsed JSON at ``path``, None) or (None, why it is unreadable)."""
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8")), None
    except FileNotFoundError:
        return None, "missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def read_checked(path: Path, adapter: TypeAdapter, check=None) -> tuple[Any, str | None]:
    """(value, None) when the file at ``path`` parses and fits ``adapter`` (and ``check(value)`` finds nothing),
    else (None, the problem)."""
    value, problem = read_json(path)
    if problem is None:
        problem = schema_problem(value, adapter)
    if problem is None and check is not None:
        problem = check(value)
    return (None, problem) if problem else (value, None)


def set_aside_file(path: Path, what: str, problem: str) -> None:
    """Move a corrupt single-file entry out of the way (kept for inspection) and say so in one line."""
    aside = path.with_name(f".{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    try:
        os.replace(path, aside)
        where = f"moved aside to {aside}"
    except OSError:
        where = "left in place (cannot move it)"
    log.warning("cache entry for %s is corrupt (%s): %s %s; rebuilding", what, problem, path, where)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _ItselfAsEveryBaseline(dict):
    """Baselines for checking one evaluation alone: whichever reference ``summarize`` asks for is the evaluation
    itself, so every field a metric reads is read, and nothing else is needed."""

    def __init__(self, evaluation):
        super().__init__()
        self.evaluation = evaluation

    def __missing__(self, key):
        return self.evaluation

    def __contains__(self, key) -> bool:
        return True


def evaluation_check(summarize):
    """A ``check`` for cached evaluations of a benchmark: the metrics ``summarize(evaluation, baselines)`` takes
    from it must all be finite numbers, as a fresh evaluation's are (``runner/output/record_check.py``)."""
    from runner.output.record_check import explain_nulls, metric_problems

    def check(evaluation) -> str | None:
        try:
            metrics = summarize(evaluation, _ItselfAsEveryBaseline(evaluation))
        except Exception as exc:  # a field missing or of the wrong type: what summarize trips on
            return f"its metrics cannot be computed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
        problems = metric_problems(metrics, explain_nulls(metrics), prefix="its metric")
        return problems[0] if problems else None

    return check


def meta_check(expected: dict):
    """A ``CacheEntry`` check: the entry's ``meta.json`` says it was built for ``expected`` (``{"rows": 40}``)."""

    def check(entry: Path) -> str | None:
        meta, problem = read_json(Path(entry) / "meta.json")
        if problem is None and not isinstance(meta, dict):
            problem = f"holds {type(meta).__name__}, not an object"
        if problem:
            return f"meta.json: {problem}"
        for key, value in expected.items():
            if meta.get(key) != value:
                return f"meta.json: built for {key}={_short(meta.get(key))}, {value!r} was asked for"
        return None

    return check
