"""The thought splitter and each condensation rule on hand-written traces."""

from __future__ import annotations

import pytest

from runner.components import build
from runner.distill.base import Condenser
from runner.distill.condense import (
    FullTrace,
    HeadAndTail,
    HeadOnly,
    RandomThoughts,
    TailOnly,
    kept_count,
    split_thoughts,
)
from runner.errors import ConfigError

TRACE = "Read the problem.\n\nTry x = 1.\nIt fails.\n\n  \n\nTry x = 2.\n\nCheck: 2 + 2 = 4.\n\nSo x = 2."


def test_paragraphs_lines_and_regexes():
    assert split_thoughts(TRACE) == [
        "Read the problem.",
        "Try x = 1.\nIt fails.",
        "Try x = 2.",
        "Check: 2 + 2 = 4.",
        "So x = 2.",
    ]
    assert split_thoughts("a\nb\n\nc", "line") == ["a", "b", "c"]
    assert split_thoughts("a. Wait, b. Wait, c.", r"\s*Wait,\s*") == ["a.", "b.", "c."]
    assert split_thoughts("   ") == []
    with pytest.raises(ConfigError, match="traces.splitter"):
        split_thoughts("x", "[unclosed")


def test_kept_count_rounds_and_keeps_at_least_one():
    assert [kept_count(n, 0.5) for n in (0, 1, 2, 3, 5, 10)] == [0, 1, 1, 2, 2, 5]  # round half to even: 2.5 -> 2
    assert kept_count(7, 1.0) == 7 and kept_count(7, 0.01) == 1


@pytest.mark.parametrize(
    ("cls", "n", "ratio", "kept"),
    [
        (HeadAndTail, 10, 0.5, [0, 1, 2, 8, 9]),  # k = 5: head 3 (the odd one), tail 2
        (HeadAndTail, 10, 0.4, [0, 1, 8, 9]),
        (HeadAndTail, 5, 0.5, [0, 4]),  # k = round(2.5) = 2
        (HeadAndTail, 1, 0.3, [0]),  # one thought: it is kept
        (HeadAndTail, 4, 1.0, [0, 1, 2, 3]),
        (HeadOnly, 10, 0.3, [0, 1, 2]),
        (TailOnly, 10, 0.3, [7, 8, 9]),
        (TailOnly, 1, 0.5, [0]),
        (FullTrace, 6, 0.2, [0, 1, 2, 3, 4, 5]),  # none ignores the ratio
    ],
)
def test_each_rule_keeps_exactly_these_thoughts(cls, n, ratio, kept):
    assert cls(ratio=ratio).keep(n, seed=0) == kept


def test_random_keeps_the_same_count_in_order_and_repeats_with_the_seed():
    rule = RandomThoughts(ratio=0.5, seed=3)
    picks = [rule.keep(10, seed=i) for i in range(20)]
    assert all(len(p) == 5 and p == sorted(p) and len(set(p)) == 5 for p in picks)
    assert picks == [RandomThoughts(ratio=0.5, seed=3).keep(10, seed=i) for i in range(20)]
    assert len({tuple(p) for p in picks}) > 5  # examples draw differently
    assert picks != [RandomThoughts(ratio=0.5, seed=4).keep(10, seed=i) for i in range(20)]


@pytest.mark.parametrize("ratio", [0, -0.5, 1.5, "half", True])
def test_a_ratio_outside_0_1_is_refused(ratio):
    with pytest.raises(ConfigError, match="condense.ratio"):  # the declared option range, read by the builder
        build({"_target_": "runner.distill.condense.HeadAndTail", "ratio": ratio}, Condenser, "condense")
