"""WMDP and MUSE: data loading from the hub layout, schema errors, the gated corpus, fetch_data, and the
whole pipeline (GA, NPO, RMU) on the tiny model and the synthetic fixtures in tests/fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runner import job
from runner.benchmarks.base import build_benchmark
from runner.benchmarks.muse import MuseBenchmark
from runner.benchmarks.wmdp import WmdpBenchmark
from runner.data import hub
from runner.data.qa import PromptFormat
from runner.errors import ConfigError
from runner.metrics import muse as M
from runner.models import load_model
from tests.conftest import compose_cfg

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RMU_TINY = [
    "method=rmu",
    "method.layer=1",
    "method.trainable_layers=[0,1]",
    "method.steering_coeff=20",
    "method.alpha=10",
]
METHODS = {"ga": ["method=ga"], "npo": ["method=npo"], "rmu": RMU_TINY}
WMDP_METRICS = {
    "wmdp_bio",
    "wmdp_cyber",
    "wmdp_chem",
    "mmlu",
    "mmlu_college_biology",
    "mmlu_virology",
    "mmlu_college_computer_science",
    "mmlu_computer_security",
}
MUSE_METRICS = {"verbmem_forget", "knowmem_forget", "knowmem_retain", "privleak", "privleak_auc"}


@pytest.fixture(scope="module")
def tokenizer(shared_cache):
    _, tok = load_model(compose_cfg("model=tiny").model, shared_cache)
    return tok


def cfg_for(experiment: str, cache, *overrides):
    return compose_cfg(f"experiment={experiment}", f"paths.cache_dir={cache}", *overrides)


def build(cls, tokenizer, cache, experiment, *overrides):
    cfg = cfg_for(experiment, cache, *overrides)
    bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
    assert type(bench) is cls
    return bench


@pytest.fixture
def hub_copy(tmp_path) -> Path:
    """A writable copy of the fixture hub layout, to break."""
    return Path(shutil.copytree(FIXTURES / "hub", tmp_path / "hub"))


def _rewrite(path: Path, change) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(change(r)) + "\n" for r in rows))


# ---- WMDP data -----------------------------------------------------------------------------------


def test_wmdp_reads_the_hub_layout(tokenizer, shared_cache):
    bench = build(WmdpBenchmark, tokenizer, shared_cache, "wmdp_smoke_tiny")
    assert set(bench.questions) == {"bio", "cyber", "chem"}
    assert all(len(v) == 8 for v in bench.questions.values())
    # forget: 4 texts of the bio stand-in + 4 of cyber-forget-corpus; retain: 4 WikiText + 4 bio-retain
    assert len(bench.forget_rows) == 8 and len(bench.retain_rows) == 8
    assert "moss" in bench.forget_rows[0]["text"] and "Harlow" in bench.forget_rows[4]["text"]
    assert "Homarus" in bench.retain_rows[0]["text"] and "fern" in bench.retain_rows[4]["text"]
    assert bench.finetuned_models == {}  # the loaded model is the one unlearned
    encoded = bench.encode(bench.forget_rows)
    assert [e["index"] for e in encoded] == list(range(8))
    assert all(e["labels"] == e["input_ids"] and len(e["input_ids"]) <= 64 for e in encoded)
    assert len(bench.mmlu.rows) == 16 and {r["subject"] for r in bench.mmlu.rows} == {
        "college_biology",
        "virology",
        "college_computer_science",
        "computer_security",
    }


def test_wmdp_bio_forget_corpus_is_gated(tokenizer, shared_cache):
    with pytest.raises(ConfigError) as err:
        build(WmdpBenchmark, tokenizer, shared_cache, "wmdp_smoke_tiny", "benchmark.bio_forget_corpus=null")
    msg = str(err.value)
    assert "benchmark.bio_forget_corpus" in msg and "gated" in msg
    assert "https://huggingface.co/datasets/cais/wmdp-bio-forget-corpus" in msg  # where to request access
    assert "benchmark.bio_forget_corpus=/path/to" in msg and "forget_corpora=[cyber]" in msg  # where to put it
    with pytest.raises(ConfigError, match="does not exist"):
        build(WmdpBenchmark, tokenizer, shared_cache, "wmdp_smoke_tiny", "benchmark.bio_forget_corpus=/nowhere.jsonl")
    cyber_only = build(
        WmdpBenchmark,
        tokenizer,
        shared_cache,
        "wmdp_smoke_tiny",
        "benchmark.bio_forget_corpus=null",
        "benchmark.forget_corpora=[cyber]",
    )
    assert len(cyber_only.forget_rows) == 4


def test_wrong_answer_type_names_data_set_split_and_column(tokenizer, shared_cache, hub_copy):
    _rewrite(hub_copy / "cais/wmdp/wmdp-bio/test.jsonl", lambda r: {**r, "answer": "ABCD"[r["answer"]]})
    with pytest.raises(ConfigError) as err:
        build(WmdpBenchmark, tokenizer, shared_cache, "wmdp_smoke_tiny", f"benchmark.source={hub_copy}")
    msg = str(err.value)
    for part in ("`cais/wmdp`", "`wmdp-bio`", "split `test`", "column `answer`", "an integer 0-3", "'A'"):
        assert part in msg


def test_missing_column_names_data_set_split_and_column(tokenizer, shared_cache, hub_copy):
    _rewrite(hub_copy / "cais/wmdp/wmdp-cyber/test.jsonl", lambda r: {k: v for k, v in r.items() if k != "choices"})
    with pytest.raises(ConfigError) as err:
        build(WmdpBenchmark, tokenizer, shared_cache, "wmdp_smoke_tiny", f"benchmark.source={hub_copy}")
    msg = str(err.value)
    assert "`wmdp-cyber`" in msg and "split `test`" in msg and "no column `choices`" in msg

    _rewrite(hub_copy / "muse-bench/MUSE-News/knowmem/retain_qa.jsonl", lambda r: {"question": r["question"]})
    with pytest.raises(ConfigError) as err:
        build(MuseBenchmark, tokenizer, shared_cache, "muse_smoke_tiny", f"benchmark.source={hub_copy}")
    msg = str(err.value)
    assert "`muse-bench/MUSE-News` config `knowmem` split `retain_qa`" in msg and "no column `answer`" in msg


def test_missing_split_points_at_fetch_data(tokenizer, shared_cache, hub_copy):
    (hub_copy / "cais/wmdp/wmdp-chem/test.jsonl").unlink()
    with pytest.raises(ConfigError) as err:
        build(WmdpBenchmark, tokenizer, shared_cache, "wmdp_smoke_tiny", f"benchmark.source={hub_copy}")
    assert "wmdp-chem" in str(err.value) and "scripts/fetch_data.py wmdp" in str(err.value)


# ---- MUSE data -----------------------------------------------------------------------------------


def test_muse_news_and_books(tokenizer, shared_cache):
    news = build(MuseBenchmark, tokenizer, shared_cache, "muse_smoke_tiny")
    assert news.repo == "muse-bench/MUSE-News"
    assert set(news.finetuned_models) == {"target", "retain"}
    assert news.finetuned_models["target"] == news.forget_rows + news.retain_rows
    assert news.finetuned_models["retain"] == news.retain_rows
    assert "Brackenford" in news.forget_rows[0]["text"]
    assert len(news.verbmem) == 3 and len(news.knowmem["forget"]["icl"]) == 2
    books = build(MuseBenchmark, tokenizer, shared_cache, "muse_smoke_tiny", "benchmark.corpus=books")
    assert books.repo == "muse-bench/MUSE-Books" and "Ada Thornfield" in books.forget_rows[0]["text"]
    # News' scalability forget sets; Books has none
    all_windows = ["benchmark.subset.forget=null"]
    full = build(MuseBenchmark, tokenizer, shared_cache, "muse_smoke_tiny", *all_windows)
    scal = build(
        MuseBenchmark,
        tokenizer,
        shared_cache,
        "muse_smoke_tiny",
        *all_windows,
        "benchmark.forget.config=scal",
        "benchmark.forget.split=forget_1",
    )
    assert scal.forget_rows == full.forget_rows[: len(scal.forget_rows)] and len(scal.forget_rows) < len(
        full.forget_rows
    )
    with pytest.raises(ConfigError, match="benchmark.forget.config"):
        build(
            MuseBenchmark,
            tokenizer,
            shared_cache,
            "muse_smoke_tiny",
            "benchmark.corpus=books",
            "benchmark.forget.config=scal",
        )


def test_muse_hub_target_needs_a_retrain_auc(tokenizer, shared_cache):
    with pytest.raises(ConfigError, match="benchmark.privleak.retrain_auc"):
        build(MuseBenchmark, tokenizer, shared_cache, "muse_smoke_tiny", "benchmark.build_references=false")
    bench = build(
        MuseBenchmark,
        tokenizer,
        shared_cache,
        "muse_smoke_tiny",
        "benchmark.build_references=false",
        "benchmark.privleak.retrain_auc=0.4772",
    )
    assert bench.finetuned_models == {}
    evaluation = {
        "suites": {
            "verbmem_forget": {"rouge_l_f1": 0.5},
            "knowmem_forget": {"rouge_l_f1": 0.25},
            "knowmem_retain": {"rouge_l_f1": 0.75},
            "privleak": {"auc": 0.1},
        }
    }
    got = bench.summarize(evaluation, {})
    assert got == {
        "verbmem_forget": 0.5,
        "knowmem_forget": 0.25,
        "knowmem_retain": 0.75,
        "privleak": pytest.approx((0.1 - 0.4772) / 0.4772 * 100),
        "privleak_auc": 0.1,
    }


# ---- scripts/fetch_data.py -----------------------------------------------------------------------


def test_fetch_data_writes_the_layout_the_benchmarks_read(tokenizer, shared_cache, tmp_path):
    import scripts.fetch_data as fetch_data

    out = tmp_path / "offline"
    splits = [s for s in fetch_data.splits_for("muse", "news") if s[0].config not in ("scal", "sust")]
    written = fetch_data.fetch(splits, out, source=str(FIXTURES / "hub"))
    assert (out / "muse-bench/MUSE-News/knowmem/forget_qa.parquet") in written
    assert hub.read_rows(out / "muse-bench/MUSE-News/raw/forget.parquet") == hub.read_rows(
        FIXTURES / "hub/muse-bench/MUSE-News/raw/forget.jsonl"
    )
    from_parquet = build(MuseBenchmark, tokenizer, shared_cache, "muse_smoke_tiny", f"benchmark.source={out}")
    from_jsonl = build(MuseBenchmark, tokenizer, shared_cache, "muse_smoke_tiny")
    assert from_parquet.identity() == from_jsonl.identity()
    assert fetch_data.fetch(splits, out, source=str(FIXTURES / "hub")) == []  # present splits are kept
    names = {(s.repo, s.config, s.split) for s, _ in fetch_data.splits_for("wmdp")}
    assert ("cais/wmdp", "wmdp-bio", "test") in names and ("cais/wmdp-corpora", "cyber-forget-corpus", "train") in names
    assert len(fetch_data.splits_for("mmlu")) == 57


# ---- the pipeline end to end -----------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(METHODS))
def test_wmdp_pipeline(shared_cache, tmp_path, method):
    result = job.run(cfg_for("wmdp_smoke_tiny", shared_cache, *METHODS[method]), tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["status"] == "completed"
    assert list(on_disk["metrics"]) == ["target", "unlearned"]
    for row in on_disk["metrics"].values():
        assert set(row) == WMDP_METRICS
        assert all(0.0 <= v <= 1.0 for v in row.values())
    per = on_disk["per_example"]
    assert len(per["unlearned"]["wmdp_bio"]["prediction"]) == 8 and len(per["unlearned"]["mmlu"]["subject"]) == 16
    # unlearning moved the model: the choice log-probs of the forget questions changed
    assert per["unlearned"]["wmdp_cyber"]["logprobs"] != per["target"]["wmdp_cyber"]["logprobs"]
    assert result["training"]["unlearn"]["steps"] > 0


@pytest.mark.parametrize("method", sorted(METHODS))
def test_muse_pipeline(shared_cache, tmp_path, method):
    job.run(cfg_for("muse_smoke_tiny", shared_cache, *METHODS[method]), tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["status"] == "completed"
    metrics = on_disk["metrics"]
    assert list(metrics) == ["target", "retain", "unlearned"]
    for row in metrics.values():
        assert set(row) == MUSE_METRICS
    # PrivLeak is relative to the retain model's AUC: 0 for the retain model itself
    retain_auc = metrics["retain"]["privleak_auc"]
    assert metrics["retain"]["privleak"] == 0.0
    for row in ("target", "unlearned"):
        assert metrics[row]["privleak"] == pytest.approx(M.privleak(metrics[row]["privleak_auc"], retain_auc))
    assert on_disk["evaluation"]["unlearned"]["privleak"]["n_forget"] == 6
    per = on_disk["per_example"]["unlearned"]
    assert len(per["verbmem_forget"]["generation"]) == 3 and len(per["knowmem_retain"]["rouge_l_f1"]) == 3
    assert per["privleak"]["min_k_forget"] != on_disk["per_example"]["target"]["privleak"]["min_k_forget"]
