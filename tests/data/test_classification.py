"""Labelled classification rows (SST-2, MRPC, AG News) from hub-shaped files, and their data errors."""

from __future__ import annotations

import pytest

from runner.data import classification
from runner.errors import ConfigError
from tests.conftest import ROOT

FIXTURES = str(ROOT / "tests" / "fixtures" / "hub")


def test_classification_fixtures_have_the_hub_schemas():
    sst2 = classification.load_task_rows("sst2", FIXTURES, "nyu-mll/glue", "sst2", "validation", "k")
    assert len(sst2) == 8 and {r["answer"] for r in sst2} == {"negative", "positive"}
    assert sst2[0]["answer"] == ("positive" if sst2[0]["label"] == 1 else "negative")
    mrpc = classification.load_task_rows("mrpc", FIXTURES, "nyu-mll/glue", "mrpc", "train", "k")
    assert len(mrpc) == 16 and "Sentence 2:" in mrpc[0]["question"] and {r["answer"] for r in mrpc} == {"yes", "no"}
    news = classification.load_task_rows("agnews", FIXTURES, "fancyzhx/ag_news", "default", "test", "k")
    assert [r["label"] for r in news] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_bad_rows_are_config_errors(tmp_path):
    bad = tmp_path / "nyu-mll" / "glue" / "sst2"
    bad.mkdir(parents=True)
    (bad / "test.jsonl").write_text('{"sentence": "hidden", "label": -1, "idx": 0}\n')
    with pytest.raises(ConfigError, match="label -1"):
        classification.load_task_rows("sst2", str(tmp_path), "nyu-mll/glue", "sst2", "test", "finetune_attack.source")
    (bad / "train.jsonl").write_text('{"sentence": "no label"}\n')
    with pytest.raises(ConfigError, match="column `label`"):
        classification.load_task_rows("sst2", str(tmp_path), "nyu-mll/glue", "sst2", "train", "finetune_attack.source")
