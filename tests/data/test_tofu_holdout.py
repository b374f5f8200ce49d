"""Offline TOFU holdout rows (runner/data/tofu.py): whole authors never trained on, drawn once by seed."""

from __future__ import annotations

from datasets import Dataset

from runner.data import tofu


def _full(n_authors: int) -> Dataset:
    rows = [{"question": f"a{a} q{i}", "answer": f"a{a} x{i}"} for a in range(n_authors) for i in range(20)]
    return Dataset.from_list(rows)


def test_unseen_authors_only_whole_authors_and_as_many_rows_as_asked():
    full = _full(5)
    trained = {"a1 q3", "a4 q0"}  # one trained row makes the whole author a member
    rows, authors = tofu.unseen_author_rows(full, trained, 30, seed=0)
    assert len(rows) == 30 and len(authors) == 2
    assert set(authors) <= {0, 2, 3}
    assert {r["question"].split()[0] for r in rows} == {f"a{a}" for a in authors}
    assert rows[:20] == [{"question": f"a{authors[0]} q{i}", "answer": f"a{authors[0]} x{i}"} for i in range(20)]
    assert tofu.unseen_author_rows(full, trained, 30, seed=0) == (rows, authors)  # the seed fixes the draw


def test_too_few_unseen_authors_gives_what_there_is():
    rows, authors = tofu.unseen_author_rows(_full(2), {"a0 q0"}, 40, seed=0)
    assert authors == [1] and len(rows) == 20


def test_the_shipped_full_config_is_in_author_blocks_matching_forget01():
    full = tofu.load_config("full", "local")
    forget = tofu.load_config("forget01", "local")
    # forget01 is the last two authors of `full`, rows 3960..3999, in order
    assert full["question"][-40:] == forget["question"]
    assert tofu.holdout_split("forget05") == "holdout05"
