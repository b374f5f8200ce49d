"""The full TOFU pipeline on the tiny model: it memorises a few facts (target fine-tune), then unlearns them."""

from __future__ import annotations

import json
import math

import pytest
import torch

from runner import job, unlearning_job
from tests.conftest import RMU_TINY, RMU_TINY_OPTIONS

REQUIRED = {"status", "job_key", "config", "metrics", "evaluation", "per_example", "training", "timings", "versions"}


@pytest.mark.parametrize("method", ["ga", "graddiff", "npo"])
def test_unlearning_lowers_forget_metrics(tiny_cfg, tmp_path, method):
    cfg = tiny_cfg(f"method={method}")
    result = job.run(cfg, tmp_path)

    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["status"] == "completed"
    assert set(on_disk) >= REQUIRED
    assert on_disk["config"]["method"]["_target_"] == cfg.method._target_
    for stage in ("load_model", "build_benchmark", "finetuned_models", "unlearn", "evaluate"):
        assert on_disk["timings"][stage] >= 0
    # one optimizer step per batch of forget rows (each paired with retain rows), every epoch
    n_forget, u = cfg.benchmark.subset.forget, cfg.unlearn
    expected_steps = math.ceil(n_forget / (u.batch_size * u.grad_accum)) * u.epochs
    assert on_disk["training"]["unlearn"]["steps"] == expected_steps == 12

    target, retain, unlearned = (result["metrics"][k] for k in ("target", "retain", "unlearned"))
    # the target memorised the forget set better than the model that never saw it
    assert target["forget_prob"] > retain["forget_prob"]
    # unlearning removes most of it
    assert unlearned["forget_prob"] < 0.5 * target["forget_prob"]
    assert 0.0 <= unlearned["forget_quality"] <= 1.0
    assert retain["forget_quality"] == pytest.approx(1.0)
    # answers long enough for ROUGE to tell the three models apart (a short cap made them equal)
    assert len({target["retain_rouge"], retain["retain_rouge"], unlearned["retain_rouge"]}) == 3

    per = on_disk["per_example"]["unlearned"]
    n_forget = cfg.benchmark.subset.forget
    assert len(per["forget"]["prob"]) == n_forget
    assert len(per["forget"]["truth_ratio"]) == n_forget
    assert len(per["forget"]["generation"]) == n_forget
    assert set(per) == {"forget", "retain", "real_authors", "world_facts", "holdout"}

    # privacy on a planted split: the target was fine-tuned on the forget rows (members) and never on the
    # holdout authors (non-members), so its Min-K% AUC is near 1 and its PrivLeak far below 0; the retain
    # model is PrivLeak's own reference, so its PrivLeak is 0 by construction
    assert target["mia_min_k"] > 0.9 and target["privleak"] < -50
    assert retain["privleak"] == 0.0 and retain["mia_reference"] == 0.5
    assert target["extraction_strength"] > retain["extraction_strength"]
    holdout = on_disk["evaluation"]["target"]["holdout"]
    assert holdout["split"] == "full" and holdout["n"] == n_forget and holdout["authors"]
    assert len(per["holdout"]["mia_min_k"]) == len(per["forget"]["mia_min_k"]) == n_forget
    assert on_disk["evaluation"]["unlearned"]["mia"]["privleak_reference"] == "retain model"


def test_graddiff_kl_retain_term_runs(tiny_cfg, tmp_path):
    result = job.run(tiny_cfg("method=graddiff", "method.retain_loss=kl"), tmp_path)
    assert result["status"] == "completed"
    assert result["metrics"]["unlearned"]["forget_prob"] < result["metrics"]["target"]["forget_prob"]


# per-method settings that fit the 2-layer tiny model
ZOO = {
    "simnpo": ["method=simnpo"],
    "idkdpo": ["method=idkdpo"],
    "wga": ["method=wga"],
    "undial": ["method=undial"],
    "ceu": ["method=ceu"],
    "satimp": ["method=satimp"],
    "pdu": ["method=pdu", "method.dual_warmup_epochs=0"],  # the reference's 5-epoch warm-up outlasts the 6 epochs
    "dpo": ["method=dpo", "method.alternates=tests/fixtures/tofu_forget01_alternates.jsonl"],
    "altpo": ["method=altpo", "method.max_new_tokens=12"],
    "rmu": RMU_TINY,
    "r2mu": [  # TOFU's QA rows as the forget documents (question and answer as one text)
        "method=r2mu",
        *RMU_TINY_OPTIONS,
        "method.traces={new_tokens: 16, train_tokens: 8, holdout: 0.25, batch_size: 8}",
        "method.cot.subset=8",
        "method.cot_max_tokens=32",
    ],
    "task_vector": ["method=task_vector"],
    "blur": ["method=blur"],
    "blur_rmu": [
        "method=blur",
        "method@method.base=rmu",
        "method.base.layer=1",
        "method.base.trainable_layers=[0,1]",
        "method.base.steering_coeff=20",
        "method.base.alpha=10",
    ],
    "ilu": ["method=ilu", "method.env_examples=8"],
    "ilu_rmu_scalar": [
        "method=ilu",
        "method.env_examples=8",
        "method.reading=scalar",
        "method@method.base=rmu",
        "method.base.layer=1",
        "method.base.trainable_layers=[0,1]",
        "method.base.steering_coeff=20",
        "method.base.alpha=10",
    ],
}


# each method's signature in what it logs and what it changes
RMU_WEIGHTS = {f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1)}  # RMU's trainable_layers=[0,1]
TERMS = {  # the loss terms each method logs per step: its own names (`forget_name`, `loss()` terms)
    "simnpo": {"simnpo_forget", "retain_nll"},
    "idkdpo": {"idkdpo_forget", "retain_nll"},
    "wga": {"wga_forget", "retain_nll"},
    "undial": {"undial_kl"},  # alpha 0: no retain term
    "ceu": {"ceu_forget"},  # forget-only
    "satimp": {"satimp_forget", "retain_nll"},
    "pdu": {"pdu_forget", "retain_nll", "pdu_dual"},
    "dpo": {"dpo_forget", "retain_nll"},
    "altpo": {"altpo_forget", "retain_nll"},
    "rmu": {"rmu_forget", "rmu_retain"},
    "r2mu": {"r2mu_forget", "r2mu_retain", "r2mu_trace", "r2mu_cot"},
    "task_vector": {"forget_nll"},  # the fine-tune on the forget set, which is then negated
    "blur": {"forget", "retain"},  # BLUR's own backward logs the two unweighted terms of its base
    "blur_rmu": {"forget", "retain"},
    "ilu": {"npo_forget", "retain_nll", "ilu_penalty"},
    "ilu_rmu_scalar": {"rmu_forget", "rmu_retain", "ilu_penalty"},
}


class _Spy:
    """Wraps the unlearning stage: the weights before and after, the per-step logs, the trainer's end state."""

    def __init__(self, real):
        from transformers import TrainerCallback

        spy = self
        self.real, self.logs, self.trained = real, [], []

        class Recorder(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    spy.logs.append(dict(logs))

            def on_train_end(self, args, state, control, model=None, **kwargs):
                spy.trained.append({n: p.detach().float().clone() for n, p in model.named_parameters()})

        self.recorder = Recorder()

    def __call__(self, method, data, train_cfg, output_dir, callbacks=None, **kwargs):
        self.before = {n: p.detach().float().clone() for n, p in data.model.named_parameters()}
        out = self.real(method, data, train_cfg, output_dir, [*(callbacks or []), self.recorder], **kwargs)
        self.after = {n: p.detach().float().clone() for n, p in data.model.named_parameters()}
        self.trainable = {n for n, p in data.model.named_parameters() if p.requires_grad}
        return out

    def changed(self) -> set[str]:
        return {n for n, w in self.after.items() if not torch.equal(w, self.before[n])}


def _first_last(logs: list[dict], term: str) -> tuple[float, float]:
    return logs[0][term], logs[-1][term]


@pytest.mark.parametrize("case", sorted(ZOO))
def test_method_zoo_end_to_end(tiny_cfg, tmp_path, case, monkeypatch):
    """Every method end to end on the tiny model, each checked by its own signature: the loss terms it logs
    under its own names, where they start and which way they go, and which weights it changed."""
    spy = _Spy(unlearning_job.unlearn)
    monkeypatch.setattr(unlearning_job, "unlearn", spy)
    result = job.run(tiny_cfg(*ZOO[case]), tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["status"] == "completed"
    target, unlearned = result["metrics"]["target"], result["metrics"]["unlearned"]
    assert unlearned["forget_prob"] < target["forget_prob"]

    record = on_disk["training"]["unlearn"]
    assert record["steps"] > 0 and math.isfinite(record["train_loss"])
    assert len(spy.logs) == record["steps"]  # one log line per step, each with the method's own terms
    assert all(set(log) - {"loss", "grad_norm", "learning_rate", "epoch"} == TERMS[case] for log in spy.logs)
    two_ln2_over_beta = 2 * math.log(2) / 0.1  # NPO-type loss at theta = theta_ref (beta 0.1)
    rmu_based = "rmu" in case or case == "r2mu"
    if rmu_based:  # only RMU's trainable layers moved; theta_0's activations kept exactly at the first step
        assert spy.trainable == RMU_WEIGHTS and spy.changed() == RMU_WEIGHTS
        forget, retain = {"blur_rmu": ("forget", "retain"), "r2mu": ("r2mu_forget", "r2mu_retain")}.get(
            case, ("rmu_forget", "rmu_retain")
        )
        assert spy.logs[0][retain] == 0.0
        first, last = _first_last(spy.logs, forget)  # forget activations move towards the control vector
        assert last < first
    else:  # the tiny model trains every parameter
        assert spy.changed() == spy.trainable == set(spy.before)
    if case == "r2mu":  # the traces follow the forget text; the chains of thought start at theta_0's
        assert spy.logs[0]["r2mu_cot"] == 0.0
        first, last = _first_last(spy.logs, "r2mu_trace")
        assert last < first
        assert record["trace_mse"]["end"] < record["trace_mse"]["start"]
    if case in ("idkdpo", "blur", "ilu"):  # NPO (BLUR's, ILU's base) and IdkDPO start at 2 ln2 / beta, then fall
        forget = {"idkdpo": "idkdpo_forget", "blur": "forget", "ilu": "npo_forget"}[case]
        first, last = _first_last(spy.logs, forget)
        assert first == pytest.approx(two_ln2_over_beta, abs=1e-3) and last < 0.01 * first
    if case in ("dpo", "altpo"):  # DPO from a file and from the model's own alternates: 2 ln2 / beta, then down
        first, last = _first_last(spy.logs, f"{case}_forget")
        assert first == pytest.approx(two_ln2_over_beta, abs=1e-3) and last < 0.5 * first
    if case == "pdu":  # the logit gap shrinks; lambda starts at alpha and moves with the retain loss each step
        first, last = _first_last(spy.logs, "pdu_forget")
        assert last < first
        assert spy.logs[0]["pdu_dual"] == 1.0 and len({log["pdu_dual"] for log in spy.logs}) > 1
        assert record["dual_end"] >= 0 and record["retain_loss_eps"] > 0
    if case in ("ceu", "satimp"):  # the gold tokens lose probability: CE-U's target moves off them, SatImp ascends
        first, last = _first_last(spy.logs, TERMS[case].difference({"retain_nll"}).pop())
        assert last != first
    if case.startswith("ilu"):  # the invariance penalty sees real environment gradients at every step
        assert all(log["ilu_penalty"] > 0 for log in spy.logs)
    if case in ("simnpo", "undial"):  # reference-free losses that fall as the forget answers lose probability
        first, last = _first_last(spy.logs, TERMS[case].difference({"retain_nll"}).pop())
        assert last < 0.5 * first
    if case == "wga":  # -sum w * log p with w = p^beta: negative, rising to 0 as the answers lose probability
        first, last = _first_last(spy.logs, "wga_forget")
        assert first < last < 0
    if case == "task_vector":  # a fine-tune on the forget set (its NLL falls), then theta_0 - lam * tau
        first, last = _first_last(spy.logs, "forget_nll")
        assert last < first
        assert record["variant"] == "full" and len(spy.trained) == 1
        finetuned = spy.trained[0]
        tau = {n: finetuned[n] - spy.before[n] for n in spy.before}
        assert record["tau_norm"] == pytest.approx(math.sqrt(sum(float(t.double().pow(2).sum()) for t in tau.values())))
        for name, weight in spy.after.items():  # lam 1: the fine-tune negated
            torch.testing.assert_close(weight, spy.before[name] - tau[name], rtol=0, atol=1e-5)
