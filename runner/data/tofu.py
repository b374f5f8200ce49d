"""TOFU splits from the shipped files, a local directory laid out like the hub, or the hub.

The hub stores every config as JSON Lines (``<config>.json``); the shipped copy
under ``data/tofu`` keeps that layout, so a directory source and the local source
are read the same way.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from runner.data.files import read_jsonl
from runner.data.hub import from_hub
from runner.errors import ConfigError

HUB_ID = "locuslab/TOFU"
FORGET_SPLITS = ("forget01", "forget05", "forget10")
RETAIN_FOR_FORGET = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
PROJECT_DATA = Path(__file__).resolve().parents[2] / "data" / "tofu"


def input_of(name: str, source: str):
    """The file (or hub config) ``load_config(name, source)`` reads, as a job input (runner/inputs.py)."""
    from runner.inputs import Input

    if source == "hub":
        return Input.hub_data("benchmark.source", f"{HUB_ID} {name}")
    folder = PROJECT_DATA if source == "local" else Path(source).expanduser()
    return Input.file("benchmark.source", folder / f"{name}.json", format="jsonl")


def load_config(name: str, source: str) -> Dataset:
    """One TOFU config (e.g. ``forget01_perturbed``) as a Dataset.

    ``source`` is ``local`` (the files shipped in ``data/tofu``), ``hub``
    (``locuslab/TOFU``) or a directory holding ``<name>.json`` files.
    """
    if source == "hub":
        return _load_hub(name)
    folder = PROJECT_DATA if source == "local" else Path(source).expanduser()
    path = folder / f"{name}.json"
    if not path.is_file():
        where = "the shipped TOFU files" if source == "local" else f"directory {folder}"
        raise ConfigError(
            "benchmark.source",
            f"TOFU config `{name}` is not in {where} (no {path})",
            "use benchmark.source=hub on a machine with network, or point benchmark.source at a "
            f"directory holding {name}.json (JSON Lines, as on the hub); offline, "
            "benchmark.forget_split=forget01 with benchmark.source=local works",
        )
    return Dataset.from_list(read_jsonl(path, "benchmark.source"))


def _load_hub(name: str) -> Dataset:
    from datasets import load_dataset

    return from_hub(
        lambda: load_dataset(HUB_ID, name, split="train"),
        "benchmark.source",
        f"load `{HUB_ID}` config `{name}`",
        "check the network, or run offline with benchmark.source=local (forget01 ships with the project)",
    )


def check_columns(ds: Dataset, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise ConfigError(
            "benchmark.source",
            f"TOFU config `{name}` lacks column(s) {missing} (has {ds.column_names})",
            "point benchmark.source at files in the hub schema",
        )


ROWS_PER_AUTHOR = 20  # TOFU's `full` config: 200 fictitious authors, 20 questions each, in author order


def holdout_split(forget_split: str) -> str:
    """The hub's non-member config matching a forget split: forget05 -> holdout05."""
    return forget_split.replace("forget", "holdout")


def unseen_author_rows(full: Dataset, trained_questions: set[str], n_rows: int, seed: int) -> tuple[list[dict], list]:
    """``n_rows`` rows of TOFU authors none of whose questions were trained on, authors drawn by ``seed``.

    TOFU's shipped ``full`` config lists each author's 20 questions together, so an author is a
    block of 20 rows; a whole author is taken at a time (members and non-members then differ by
    who they are about, as on the hub's holdout configs). Returns (rows, the drawn author indices).
    """
    import random

    questions, answers = full["question"], full["answer"]
    n_authors = len(questions) // ROWS_PER_AUTHOR
    unseen = [
        a
        for a in range(n_authors)
        if not trained_questions.intersection(questions[a * ROWS_PER_AUTHOR : (a + 1) * ROWS_PER_AUTHOR])
    ]
    random.Random(seed).shuffle(unseen)
    rows, authors = [], []
    for a in unseen:
        if len(rows) >= n_rows:
            break
        authors.append(a)
        span = range(a * ROWS_PER_AUTHOR, (a + 1) * ROWS_PER_AUTHOR)
        rows += [{"question": questions[i], "answer": answers[i]} for i in span]
    return rows[:n_rows], authors
