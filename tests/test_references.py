"""Reference models given, not built (runner/references.py): checks, loading, and a job that starts from them.

Local directories saved with ``save_pretrained`` stand in for hub checkpoints such as
``open-unlearning/tofu_Llama-3.2-1B-Instruct_full``; a hub id is checked to reach
``from_pretrained`` and to fail offline with the config key named.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from runner import job, references
from runner.data import tofu as tofu_data
from runner.data.qa import IGNORE, PromptFormat, encode_qa
from runner.errors import ConfigError
from runner.job_kinds import validate
from runner.models import load_model
from tests.conftest import ROOT, compose_cfg
from tests.test_retain_logs import ou_tofu_log

HUB_TARGET = "open-unlearning/tofu_Llama-3.2-1B-Instruct_full"


@pytest.fixture(scope="module")
def checkpoints(shared_cache, tmp_path_factory):
    """Two tiny-model checkpoints with different weights: a target and a retain model, as save_pretrained leaves them."""
    root = tmp_path_factory.mktemp("checkpoints")
    model, _ = load_model(compose_cfg("model=tiny").model, shared_cache)
    out = {}
    for i, kind in enumerate(("target", "retain")):
        torch.manual_seed(i)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        model.save_pretrained(root / kind)
        out[kind] = root / kind
    return out


def test_a_reference_is_a_saved_model_directory_or_a_hub_id(checkpoints, tmp_path):
    assert references.check_spec("benchmark.target", str(checkpoints["target"])) == "dir"
    assert references.check_spec("benchmark.target", HUB_TARGET) == "hub"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"`benchmark.retain`: .*empty` is a directory without config.json"):
        references.check_spec("benchmark.retain", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"`benchmark.target`: no model directory at `./nowhere`"):
        references.check_spec("benchmark.target", "./nowhere")
    with pytest.raises(ConfigError, match=r"`benchmark.target`: `tofu full` is neither a local directory nor a hub id"):
        references.check_spec("benchmark.target", "tofu full")


def test_combinations_that_cannot_work_fail_at_validation(checkpoints, tmp_path):
    target = f"benchmark.target={checkpoints['target']}"
    with pytest.raises(
        ConfigError, match=r"`benchmark.retain`: a ready target needs a ready retain model or a retain log"
    ):
        validate(compose_cfg(target))
    with pytest.raises(ConfigError, match=r"`benchmark.target`: build_references=false"):
        validate(compose_cfg("benchmark=muse", "benchmark.build_references=false", target))
    (tmp_path / "log.json").write_text(json.dumps(ou_tofu_log([0.5] * 400)))
    with pytest.raises(ConfigError, match=r"`benchmark.retain_logs`: .*400 truth ratios but forget01 needs 40"):
        validate(compose_cfg(target, f"benchmark.retain_logs={tmp_path / 'log.json'}"))
    validate(compose_cfg(target, f"benchmark.retain={checkpoints['retain']}"))


def test_a_hub_id_goes_to_from_pretrained_and_fails_offline_naming_the_key(monkeypatch, shared_cache):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model_cfg = compose_cfg("model=tiny").model
    _, tokenizer = load_model(model_cfg, shared_cache)
    with pytest.raises(ConfigError, match=r"`benchmark.target`: cannot load the target model `open-unlearning/") as err:
        references.load_ready("target", HUB_TARGET, model_cfg, tokenizer)
    assert "OSError" in str(err.value) and "local directory saved with save_pretrained" in str(err.value)


def test_a_checkpoint_with_a_smaller_vocabulary_is_refused(tmp_path, shared_cache):
    from tests.conftest import random_llama

    random_llama(vocab_size=50).save_pretrained(tmp_path / "small")
    model_cfg = compose_cfg("model=tiny").model
    _, tokenizer = load_model(model_cfg, shared_cache)
    with pytest.raises(ConfigError, match=r"`benchmark.retain`: .*50 token embeddings, fewer than the \d+ tokens"):
        references.load_ready("retain", str(tmp_path / "small"), model_cfg, tokenizer)


def test_evaluation_only_job_from_ready_target_and_retain_and_an_open_unlearning_log(tiny_cfg, checkpoints, tmp_path):
    ratios = [0.2 + 0.02 * i for i in range(40)]  # a retain model's forget01 truth ratios, as open-unlearning logs them
    log = tmp_path / "TOFU_EVAL.json"
    log.write_text(json.dumps(ou_tofu_log(ratios)))
    cfg = tiny_cfg(
        "method=none",
        f"benchmark.target={checkpoints['target']}",
        f"benchmark.retain={checkpoints['retain']}",
        f"benchmark.retain_logs={log}",
        # short answers and few utility rows: the check is where the numbers come from, not their size
        "benchmark.max_new_tokens=4",
        "benchmark.subset.retain=4",
        "benchmark.subset.eval_rows=4",
    )
    job.run(cfg, tmp_path / "run", choices={"method": "none"})
    rec = json.loads((tmp_path / "run" / "results.json").read_text())
    assert rec["status"] == "completed" and rec["training"] == {}  # nothing fine-tuned
    assert rec["references"] == {
        "target_model": str(checkpoints["target"]),
        "retain_model": str(checkpoints["retain"]),
        "retain_logs": {"path": str(log), "format": "open-unlearning"},
    }
    assert set(rec["metrics"]) == {"evaluated", "retain"}
    n = cfg.benchmark.subset.forget
    for row in ("evaluated", "retain"):  # each scored against the log's first n rows, not against each other
        ours = rec["per_example"][row]["forget"]["truth_ratio"]
        assert len(ours) == n
        assert rec["metrics"][row]["forget_quality"] == pytest.approx(ks_2samp(ours, ratios[:n]).pvalue, rel=1e-12)
    assert rec["per_example"]["evaluated"]["forget"]["prob"] != rec["per_example"]["retain"]["forget"]["prob"]

    # the evaluated row is the target checkpoint: its first forget row's probability from a plain forward pass
    model, tokenizer = load_model(compose_cfg("model=tiny").model, cfg.paths.cache_dir)
    target = references.load_ready("target", str(checkpoints["target"]), cfg.model, tokenizer)
    row = tofu_data.load_config("forget01_perturbed", "local")[0]
    enc = encode_qa(tokenizer, PromptFormat.from_cfg(cfg.model.prompt), row["question"], row["answer"], 96)
    ids, labels = torch.tensor([enc["input_ids"]]), torch.tensor([enc["labels"]])
    with torch.no_grad():
        logp = torch.log_softmax(target(ids).logits[0, :-1].double(), -1)
    answer = labels[0, 1:] != IGNORE
    nll = -logp[answer].gather(-1, labels[0, 1:][answer, None]).mean().item()
    assert rec["per_example"]["evaluated"]["forget"]["prob"][0] == pytest.approx(np.exp(-nll), rel=1e-4)


def test_unlearning_job_from_ready_models_records_lm_eval_utility(tiny_cfg, checkpoints, tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    from tests.test_lm_eval_utility import LOCAL

    monkeypatch.chdir(ROOT)  # the local task's data_files path is relative to the project root
    cfg = tiny_cfg(
        f"benchmark.target={checkpoints['target']}",
        f"benchmark.retain={checkpoints['retain']}",
        "benchmark.max_new_tokens=4",
        "benchmark.subset.retain=4",
        "benchmark.subset.eval_rows=4",
        *LOCAL,
        "utility.lm_eval.tasks=[tiny_facts]",
        "method=ga",
        "unlearn.max_steps=1",
    )
    job.run(cfg, tmp_path, choices={"method": "ga"})
    rec = json.loads((tmp_path / "results.json").read_text())
    assert rec["status"] == "completed" and set(rec["training"]) == {"unlearn"}  # no reference fine-tuned
    assert list(rec["metrics"]) == ["target", "retain", "unlearned"]
    for row in ("target", "unlearned"):  # the utility task on the models under study
        assert rec["evaluation"][row]["lm_eval"]["tiny_facts"]["n"] == 6
        assert rec["metrics"][row]["lm_eval_tiny_facts"] == rec["evaluation"][row]["lm_eval"]["tiny_facts"]["value"]
    assert "lm_eval" not in rec["evaluation"]["retain"]  # a reference, not a model under study
    # the target row is the target checkpoint, the retain row the retain checkpoint (their own numbers)
    assert rec["per_example"]["target"]["forget"]["prob"] != rec["per_example"]["retain"]["forget"]["prob"]
    assert rec["metrics"]["retain"]["forget_quality"] == pytest.approx(1.0)  # against itself


def test_unlearning_job_with_a_retain_log_fine_tunes_no_retain_model(tiny_cfg, tmp_path):
    ratios = [0.3 + 0.01 * i for i in range(40)]
    log = tmp_path / "TOFU_EVAL.json"
    log.write_text(json.dumps(ou_tofu_log(ratios)))
    # the default tiny subsets: the target model is the one the pipeline tests build (shared cache)
    cfg = tiny_cfg(f"benchmark.retain_logs={log}", "benchmark.max_new_tokens=4", "method=ga", "unlearn.max_steps=1")
    job.run(cfg, tmp_path / "run", choices={"method": "ga"})
    rec = json.loads((tmp_path / "run" / "results.json").read_text())
    assert rec["status"] == "completed" and "finetune_retain" not in rec["training"]
    assert list(rec["metrics"]) == ["target", "unlearned"]
    n = cfg.benchmark.subset.forget
    for row in ("target", "unlearned"):
        ours = rec["per_example"][row]["forget"]["truth_ratio"]
        assert rec["metrics"][row]["forget_quality"] == pytest.approx(ks_2samp(ours, ratios[:n]).pvalue, rel=1e-12)
