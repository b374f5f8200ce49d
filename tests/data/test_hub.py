"""Hub-layout data (runner/data/hub.py): a wrong type, a missing column or split names data set, split and column."""

from __future__ import annotations

import pytest

from runner.benchmarks.muse import MuseBenchmark
from runner.benchmarks.wmdp import WmdpBenchmark
from runner.errors import ConfigError
from tests.conftest import build_offline, rewrite_rows


def test_wrong_answer_type_names_data_set_split_and_column(tiny_tokenizer, shared_cache, hub_copy):
    rewrite_rows(hub_copy / "cais/wmdp/wmdp-bio/test.jsonl", lambda r: {**r, "answer": "ABCD"[r["answer"]]})
    with pytest.raises(ConfigError) as err:
        build_offline(WmdpBenchmark, tiny_tokenizer, shared_cache, "wmdp_smoke_tiny", f"benchmark.source={hub_copy}")
    msg = str(err.value)
    for part in ("`cais/wmdp`", "`wmdp-bio`", "split `test`", "column `answer`", "an integer 0-3", "'A'"):
        assert part in msg


def test_missing_column_names_data_set_split_and_column(tiny_tokenizer, shared_cache, hub_copy):
    rewrite_rows(hub_copy / "cais/wmdp/wmdp-cyber/test.jsonl", lambda r: {k: v for k, v in r.items() if k != "choices"})
    with pytest.raises(ConfigError) as err:
        build_offline(WmdpBenchmark, tiny_tokenizer, shared_cache, "wmdp_smoke_tiny", f"benchmark.source={hub_copy}")
    msg = str(err.value)
    assert "`wmdp-cyber`" in msg and "split `test`" in msg and "no column `choices`" in msg

    rewrite_rows(hub_copy / "muse-bench/MUSE-News/knowmem/retain_qa.jsonl", lambda r: {"question": r["question"]})
    with pytest.raises(ConfigError) as err:
        build_offline(MuseBenchmark, tiny_tokenizer, shared_cache, "muse_smoke_tiny", f"benchmark.source={hub_copy}")
    msg = str(err.value)
    assert "`muse-bench/MUSE-News` config `knowmem` split `retain_qa`" in msg and "no column `answer`" in msg


def test_missing_split_points_at_fetch_data(tiny_tokenizer, shared_cache, hub_copy):
    (hub_copy / "cais/wmdp/wmdp-chem/test.jsonl").unlink()
    with pytest.raises(ConfigError) as err:
        build_offline(WmdpBenchmark, tiny_tokenizer, shared_cache, "wmdp_smoke_tiny", f"benchmark.source={hub_copy}")
    assert "wmdp-chem" in str(err.value) and "scripts/fetch_data.py wmdp" in str(err.value)
