"""The MUSE benchmark (runner/benchmarks/muse.py):
the fixture data, token log-probabilities, answer cuts, the pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from runner import job
from runner.benchmarks.muse import _cut
from runner.errors import ConfigError
from runner.metrics import muse as M
from runner.scoring import token_logprobs
from tests.conftest import PIPELINE_METHODS as METHODS
from tests.conftest import experiment_cfg, random_llama


@pytest.fixture(scope="module")
def llama():
    return random_llama(vocab_size=60, max_position_embeddings=64).eval()


def test_token_logprobs_match_a_plain_forward(llama):
    rng = np.random.default_rng(3)
    seqs = [rng.integers(1, 60, size=int(n)).tolist() for n in (5, 12, 8)]
    encoded = [{"input_ids": s, "labels": list(s)} for s in seqs]
    got = token_logprobs(llama, encoded, pad_id=0, batch_size=2, precision="fp32", desc="test")
    for s, lp in zip(seqs, got, strict=True):
        with torch.no_grad():
            logp = torch.log_softmax(llama(input_ids=torch.tensor([s])).logits[0], dim=-1)
        want = [logp[i, s[i + 1]].item() for i in range(len(s) - 1)]
        np.testing.assert_allclose(lp, want, atol=1e-5)


def test_knowmem_cuts_at_stop_strings_before_stripping():
    assert _cut(" Paris\n\nQuestion: next") == "Paris"
    assert _cut("\n\nParis") == ""  # MUSE: the answer ended at the blank line
    assert _cut("Paris Question: x") == "Paris"


MUSE_METRICS = {"verbmem_forget", "knowmem_forget", "knowmem_retain", "privleak", "privleak_auc"}
# the rest of the privacy family on the privleak texts (runner/benchmarks/privacy.py)
MIA = {"loss", "zlib", "min_k", "min_k_plus_plus", "gradnorm_1", "gradnorm_2", "gradnorm_inf", "reference"}
FAMILY = {"exact_memorization", "extraction_strength"} | {f"mia_{a}" for a in MIA}


def test_muse_news_and_books(muse_offline):
    news = muse_offline()
    assert news.repo == "muse-bench/MUSE-News"
    assert set(news.finetuned_models) == {"target", "retain"}
    assert news.finetuned_models["target"] == news.forget_rows + news.retain_rows
    assert news.finetuned_models["retain"] == news.retain_rows
    assert "Brackenford" in news.forget_rows[0]["text"]
    assert len(news.verbmem) == 3 and len(news.knowmem["forget"]["icl"]) == 2
    books = muse_offline("benchmark.corpus=books")
    assert books.repo == "muse-bench/MUSE-Books" and "Ada Thornfield" in books.forget_rows[0]["text"]
    # News' scalability forget sets; Books has none
    all_windows = ["benchmark.subset.forget=null"]
    full = muse_offline(*all_windows)
    scal = muse_offline(*all_windows, "benchmark.forget.config=scal", "benchmark.forget.split=forget_1")
    assert scal.forget_rows == full.forget_rows[: len(scal.forget_rows)] and len(scal.forget_rows) < len(
        full.forget_rows
    )
    with pytest.raises(ConfigError, match="benchmark.forget.config"):
        muse_offline("benchmark.corpus=books", "benchmark.forget.config=scal")


def test_muse_hub_target_needs_a_retrain_auc(muse_offline):
    with pytest.raises(ConfigError, match="benchmark.privleak.retrain_auc"):
        muse_offline("benchmark.build_references=false")
    bench = muse_offline("benchmark.build_references=false", "benchmark.privleak.retrain_auc=0.4772")
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


@pytest.mark.parametrize("method", sorted(METHODS))
def test_muse_pipeline(shared_cache, tmp_path, method):
    job.run(experiment_cfg("muse_smoke_tiny", shared_cache, *METHODS[method]), tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["status"] == "completed"
    metrics = on_disk["metrics"]
    assert list(metrics) == ["target", "retain", "unlearned"]
    for row in metrics.values():
        assert set(row) == MUSE_METRICS | FAMILY
    # the Min-K% of MUSE's own PrivLeak and of the family agree, in opposite AUC orientations
    for row in metrics.values():
        assert row["mia_min_k"] == pytest.approx(1 - row["privleak_auc"])
    # PrivLeak is relative to the retain model's AUC: 0 for the retain model itself
    retain_auc = metrics["retain"]["privleak_auc"]
    assert metrics["retain"]["privleak"] == 0.0
    for row in ("target", "unlearned"):
        assert metrics[row]["privleak"] == pytest.approx(M.privleak(metrics[row]["privleak_auc"], retain_auc))
    assert on_disk["evaluation"]["unlearned"]["privleak"]["n_forget"] == 6
    per = on_disk["per_example"]["unlearned"]
    assert len(per["verbmem_forget"]["generation"]) == 3 and len(per["knowmem_retain"]["rouge_l_f1"]) == 3
    assert per["privleak"]["min_k_forget"] != on_disk["per_example"]["target"]["privleak"]["min_k_forget"]
