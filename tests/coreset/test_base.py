"""The selector contract: exact sizes, reproducible rankings, and the ratio every selector checks."""

from __future__ import annotations

import numpy as np
import pytest

from runner.coreset.base import Pool, Selector, coreset_size, rank_by
from runner.errors import ConfigError


def test_coreset_size_is_the_ceiling_without_float_noise():
    # 0.05 * 40 = 2.0000000000000004 and 0.07 * 100 = 7.000000000000001 in floating point
    assert [coreset_size(r, 40) for r in (0.01, 0.05, 0.1, 0.25, 1.0)] == [1, 2, 4, 10, 40]
    assert coreset_size(0.07, 100) == 7 and coreset_size(0.3, 10) == 3 and coreset_size(0.31, 10) == 4


def test_rank_by_breaks_ties_by_id():
    scores = np.array([0.5, 0.9, 0.5, 0.1])
    assert rank_by(scores, descending=True) == [1, 0, 2, 3]
    assert rank_by(scores, descending=False) == [3, 0, 2, 1]


class _Reversed(Selector):
    """The last rows first: a selector only the contract's ``select`` turns into a coreset."""

    def rank(self, pool: Pool) -> list[int]:
        return list(range(len(pool.rows)))[::-1]


def test_select_keeps_the_first_ranked_ids_ascending():
    pool = Pool([{"text": str(i)} for i in range(10)], [], None, 0, 1, "fp32")
    assert _Reversed("reversed", 0.3).select(pool) == [7, 8, 9]
    assert _Reversed("reversed", 0.3).transform(pool.rows, [7]) is None and _Reversed("r", 1.0).describe() == {}


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, True, "0.5"])
def test_ratio_outside_unit_interval_is_refused(ratio):
    with pytest.raises(ConfigError, match=r"coreset\.ratio.*\(0, 1\]"):
        _Reversed("reversed", ratio)
