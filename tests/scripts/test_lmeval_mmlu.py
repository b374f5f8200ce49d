"""The runner's MCQ scoring agrees with lm-eval-harness question by question on the shipped MMLU files.

lm-eval (the optional ``lmeval`` extra) wraps the same in-memory model (HFLM)
and reads the CSV files through a local task definition with its own MMLU
prompt; the runner goes through runner.benchmarks.mcq. Skipped without lm_eval.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lm_eval")

from runner.metrics import mcq as mcq_metrics  # noqa: E402
from runner.models import load_model  # noqa: E402
from scripts.lmeval_mmlu import lm_eval_scores, runner_scores  # noqa: E402
from tests.conftest import compose_cfg  # noqa: E402


def assert_agree(model, tokenizer, subjects, limit, workdir, padding="right"):
    theirs = lm_eval_scores(model, tokenizer, subjects, limit, 8, workdir)["subjects"]
    ours = runner_scores(model, tokenizer, subjects, limit, 8, padding=padding)["subjects"]
    for subject in subjects:
        t, o = theirs[subject], ours[subject]
        assert len(o["contexts"]) == limit
        assert t["contexts"] == o["contexts"]  # the same prompt text, character for character
        assert all(c == [" A", " B", " C", " D"] for c in t["continuations"])
        np.testing.assert_allclose(o["logprobs"], t["logprobs"], atol=2e-4)
        assert mcq_metrics.predictions(o["logprobs"]).tolist() == mcq_metrics.predictions(t["logprobs"]).tolist()
    return theirs, ours


def test_tiny_model_agrees_with_lm_eval(shared_cache, tmp_path):
    model, tokenizer = load_model(compose_cfg("model=tiny").model, shared_cache)
    assert_agree(model, tokenizer, ["virology", "computer_security", "college_biology"], 16, tmp_path)
    # left-padded batches give the same predictions
    assert_agree(model, tokenizer, ["virology"], 16, tmp_path / "left", padding="left")


@pytest.mark.slow
def test_smollm2_agrees_with_lm_eval(tmp_path_factory):
    cache = tmp_path_factory.mktemp("smol-lmeval")
    model, tokenizer = load_model(compose_cfg().model, cache)
    assert_agree(model, tokenizer, ["high_school_geography"], 16, cache / "tasks")
