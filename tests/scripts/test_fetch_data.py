"""scripts/fetch_data.py writes the layouts the benchmarks read."""

from __future__ import annotations

import sys

from runner.benchmarks.muse import MuseBenchmark
from runner.data import hub
from runner.data.reasoning import load_problems
from tests.conftest import FIXTURES_DIR, ROOT, build_offline, compose_cfg

FIXTURES = ROOT / "tests" / "fixtures" / "hub"


def _bench(name: str, *overrides: str):
    return compose_cfg("method=none", f"benchmark={name}", *overrides).benchmark


def test_fetch_data_copies_the_reasoning_splits_and_the_runner_reads_the_parquet(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import fetch_data

    splits = fetch_data.splits_for("reasoning")
    assert [s.repo for s, _ in splits] == [
        "HuggingFaceH4/MATH-500",
        "openai/gsm8k",
        "HuggingFaceH4/aime_2024",
        "opencompass/AIME2025",
        "opencompass/AIME2025",
        "zwhe99/amc23",
    ]
    hub_only = [(s, schema) for s, schema in splits if s.repo not in ("HuggingFaceH4/MATH-500", "openai/gsm8k")]
    written = fetch_data.fetch(hub_only, tmp_path, source=str(FIXTURES))  # the fixtures stand in for the hub
    assert len(written) == 4 and all(p.suffix == ".parquet" for p in written)
    for name in ("aime24", "aime25", "amc23"):
        data = _bench(name).data
        assert load_problems(data, str(tmp_path)) == load_problems(data, str(FIXTURES))


def test_fetch_data_writes_the_layout_the_benchmarks_read(tiny_tokenizer, shared_cache, tmp_path):
    import scripts.fetch_data as fetch_data

    out = tmp_path / "offline"
    splits = [s for s in fetch_data.splits_for("muse", "news") if s[0].config not in ("scal", "sust")]
    written = fetch_data.fetch(splits, out, source=str(FIXTURES_DIR / "hub"))
    assert (out / "muse-bench/MUSE-News/knowmem/forget_qa.parquet") in written
    assert hub.read_rows(out / "muse-bench/MUSE-News/raw/forget.parquet") == hub.read_rows(
        FIXTURES_DIR / "hub/muse-bench/MUSE-News/raw/forget.jsonl"
    )
    from_parquet = build_offline(
        MuseBenchmark, tiny_tokenizer, shared_cache, "muse_smoke_tiny", f"benchmark.source={out}"
    )
    from_jsonl = build_offline(MuseBenchmark, tiny_tokenizer, shared_cache, "muse_smoke_tiny")
    assert from_parquet.identity() == from_jsonl.identity()
    assert fetch_data.fetch(splits, out, source=str(FIXTURES_DIR / "hub")) == []  # present splits are kept
    names = {(s.repo, s.config, s.split) for s, _ in fetch_data.splits_for("wmdp")}
    assert ("cais/wmdp", "wmdp-bio", "test") in names and ("cais/wmdp-corpora", "cyber-forget-corpus", "train") in names
    assert len(fetch_data.splits_for("mmlu")) == 57
