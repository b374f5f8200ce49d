"""Reasoning problem sets (runner/data/reasoning.py): shipped sets, the hub layout, missing sources."""

from __future__ import annotations

import json

import pytest

from runner.data.reasoning import PROJECT_DATA, load_problems
from runner.errors import ConfigError
from tests.conftest import ROOT, compose_cfg

FIXTURES = ROOT / "tests" / "fixtures" / "hub"


def _bench(name: str, *overrides: str):
    return compose_cfg("method=none", f"benchmark={name}", *overrides).benchmark


def test_shipped_sets_and_the_hub_layout_give_the_same_rows(tmp_path):
    math500 = load_problems(_bench("math500").data, "local")
    gsm8k = load_problems(_bench("gsm8k").data, "local")
    assert len(math500) == 500 and len(gsm8k) == 1319
    assert math500[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    # the same rows laid out as the hub's <repo>/<config>/<split>.jsonl read back through the directory source
    for name, rows in (("math500", "math500/test.jsonl"), ("gsm8k", "gsm8k/test.jsonl")):
        split = _bench(name).data.splits[0]
        target = tmp_path / split.repo / split.config / f"{split.split}.jsonl"
        target.parent.mkdir(parents=True)
        target.write_text("\n".join((PROJECT_DATA / rows).read_text().splitlines()[:5]) + "\n")
    assert load_problems(_bench("math500").data, str(tmp_path)) == math500[:5]
    assert load_problems(_bench("gsm8k").data, str(tmp_path)) == gsm8k[:5]


def test_aime_and_amc_load_from_a_hub_layout_directory():
    aime24 = load_problems(_bench("aime24").data, str(FIXTURES))
    assert aime24[0] == {"question": "Find the sum of the first $10$ positive integers.", "answer": "55"}
    aime25 = load_problems(_bench("aime25").data, str(FIXTURES))  # AIME2025-I then AIME2025-II
    assert [r["answer"] for r in aime25] == ["156", "323", "667", "156", "323"]
    amc23 = load_problems(_bench("amc23").data, str(FIXTURES))
    assert [r["answer"] for r in amc23] == ["49", "121", "169"]  # floats in the hub schema


def test_missing_sources_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"benchmark\.source.*no copy.*ships.*fetch_data\.py reasoning"):
        load_problems(_bench("aime24").data, "local")
    with pytest.raises(ConfigError, match=r"opencompass/AIME2025.*fetch_data\.py reasoning"):
        load_problems(_bench("aime25").data, str(tmp_path))
    bad = tmp_path / "zwhe99" / "amc23" / "default"
    bad.mkdir(parents=True)
    (bad / "test.jsonl").write_text(json.dumps({"question": "q", "answer": None}) + "\n")
    with pytest.raises(ConfigError, match="`answer` must be a string or a number"):
        load_problems(_bench("amc23").data, str(tmp_path))
