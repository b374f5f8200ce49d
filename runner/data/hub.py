"""Hub data sets, from the hub itself or from a local copy laid out like it, with their schema checked.

``source`` is ``hub`` (``datasets.load_dataset``) or a directory holding
``<dir>/<hub repo id>/<config>/<split>.parquet`` (or ``.jsonl``), e.g.
``/data/hub/cais/wmdp/wmdp-bio/test.parquet``: the layout
``scripts/fetch_data.py`` writes, for clusters whose compute nodes are offline.

Rows come back as plain dicts after a schema check: a missing column or a
value of the wrong type stops the job with a ConfigError naming the data set,
config, split and column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner.data.files import read_jsonl, read_parquet, resolve_path
from runner.errors import ConfigError

SUFFIXES = (".parquet", ".jsonl")


@dataclass(frozen=True)
class Split:
    """One split of one config of a hub data set."""

    repo: str
    config: str
    split: str

    def __str__(self) -> str:
        return f"`{self.repo}` config `{self.config}` split `{self.split}`"

    def local_path(self, root: str | Path) -> Path | None:
        """The file for this split under ``root``, parquet preferred; None when neither exists."""
        base = resolve_path(root) / self.repo / self.config / self.split
        for suffix in SUFFIXES:
            if base.with_suffix(suffix).is_file():
                return base.with_suffix(suffix)
        return None


# ---- column checks: each returns None when the value is fine, else what it should be -----------


def _is_str(v) -> str | None:
    return None if isinstance(v, str) else "a string"


def _is_int(v) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) else "an integer"


def _is_choice_index(v) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 3 else "an integer 0-3"


def _is_four_strings(v) -> str | None:
    ok = isinstance(v, (list, tuple)) and len(v) == 4 and all(isinstance(c, str) for c in v)
    return None if ok else "a list of 4 strings"


STRING = _is_str
INTEGER = _is_int
CHOICE_INDEX = _is_choice_index
FOUR_CHOICES = _is_four_strings

Schema = dict[str, Callable[[object], "str | None"]]
TEXT: Schema = {"text": STRING}
QA: Schema = {"question": STRING, "answer": STRING}
MCQ: Schema = {"question": STRING, "choices": FOUR_CHOICES, "answer": CHOICE_INDEX}


def check_schema(rows: list[dict], schema: Schema, where: str, key: str = "benchmark.source") -> None:
    """Every row has every column of ``schema`` with a value of the right type, else a ConfigError."""
    if not rows:
        raise ConfigError(key, f"{where} has no rows", "check the data files (or the subset sizes) for this split")
    for i, row in enumerate(rows):
        for column, check in schema.items():
            if column not in row:
                raise ConfigError(
                    key,
                    f"{where} has no column `{column}` (row {i} has {sorted(row)})",
                    f"give {where} the hub schema: columns {sorted(schema)}",
                )
            expected = check(row[column])
            if expected is not None:
                value = repr(row[column])
                value = value if len(value) <= 60 else value[:57] + "..."
                raise ConfigError(
                    key,
                    f"{where} column `{column}` must be {expected}, row {i} has {value} ({type(row[column]).__name__})",
                    f"give {where} the hub schema: `{column}` as {expected}",
                )


# ---- reading -----------------------------------------------------------------------------------


def read_rows(path: Path, key: str = "benchmark.source") -> list[dict]:
    """All rows of a parquet or JSON Lines file as dicts (a malformed file: ConfigError naming it and ``key``)."""
    rows = read_parquet(path, key) if path.suffix == ".parquet" else read_jsonl(path, key)
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise ConfigError(
            key, f"{path} row {bad} is {type(rows[bad]).__name__}, not an object", "one JSON object a row"
        )
    return rows


def input_of(source: str, split: Split, key: str = "benchmark.source"):
    """The file (or hub split) ``load_split(source, split)`` reads, as a job input (runner/inputs.py)."""
    from runner.inputs import Input

    if source == "hub":
        return Input.hub_data(key, f"{split.repo} {split.config} {split.split}")
    path = split.local_path(source)
    return Input.file(key, path if path is not None else resolve_path(source) / split.repo / split.config / split.split)


def load_split(
    source: str, split: Split, schema: Schema, key: str = "benchmark.source", fetch_hint: str = ""
) -> list[dict]:
    """The rows of ``split`` from ``source`` (``hub`` or a local directory), schema-checked."""
    rows = _load_hub(split, key) if source == "hub" else _load_local(Path(str(source)), split, key, fetch_hint)
    check_schema(rows, schema, str(split), key)
    return rows


def load_file(path: str | Path, schema: Schema, what: str, key: str) -> list[dict]:
    """Rows of one named file (parquet or JSON Lines; e.g. the gated WMDP bio forget corpus), schema-checked."""
    path = resolve_path(path)
    if not path.is_file():
        raise ConfigError(key, f"no file at {path}", f"point {key} at the {what} (.jsonl or .parquet)")
    if path.suffix not in SUFFIXES:
        raise ConfigError(key, f"{path} is neither .jsonl nor .parquet", "convert the file to JSON Lines or parquet")
    rows = read_rows(path, key)
    check_schema(rows, schema, f"{what} ({path})", key)
    return rows


def _load_local(root: Path, split: Split, key: str, fetch_hint: str) -> list[dict]:
    root = resolve_path(root)
    if not root.is_dir():
        raise ConfigError(
            key,
            f"`{root}` is neither `hub` nor an existing directory",
            "use hub, or a directory laid out <dir>/<hub repo id>/<config>/<split>.parquet|jsonl",
        )
    path = split.local_path(root)
    if path is None:
        expected = root / split.repo / split.config / split.split
        raise ConfigError(
            key,
            f"{split} is not in {root} (no {expected}.parquet or .jsonl)",
            f"download it on a machine with network{fetch_hint or ' with scripts/fetch_data.py'}, or use source=hub",
        )
    return read_rows(path, key)


def from_hub(load: Callable, key: str, what: str, fix: str):
    """``load()``, a read from the hub; its failure becomes one ConfigError naming ``key``: "could not ``what``
    from the hub", the exception's type and text, and ``fix``."""
    try:
        return load()
    except Exception as exc:  # datasets raises many types for "no network" / "no access"
        raise ConfigError(key, f"could not {what} from the hub ({type(exc).__name__}: {exc})", fix) from exc


def _load_hub(split: Split, key: str) -> list[dict]:
    from datasets import load_dataset

    try:
        ds = load_dataset(split.repo, split.config, split=split.split)
    except Exception as exc:  # datasets raises many types for "no network" / "no access"
        raise ConfigError(
            key,
            f"could not load {split} from the hub ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
            "check the network and `huggingface-cli login`, or download the data on a machine with network "
            "(python scripts/fetch_data.py ... --out DIR) and set the source to DIR",
        ) from exc
    return ds.to_list()
