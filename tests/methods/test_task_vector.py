"""Task-vector negation on a tiny random Llama: theta = theta_0 - lam * tau for the full, SVD and LoRA variants."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf

from runner.components import build
from runner.data.qa import collate_qa
from runner.methods.base import Method, UnlearnData
from runner.methods.task_vector import TaskVector, finetune_cfg, low_rank
from runner.models import set_trainable
from runner.scoring import mean_nll
from runner.training import ListDataset, collate_single, train
from runner.unlearn import unlearn
from tests.conftest import compose_cfg, random_llama

IGNORE = -100
PAD, BOS, EOS = 0, 1, 2
SEED = 3
# the shared `unlearn` block, as in conf/config.yaml; the method's `finetune` lays epochs / lr over it
SHARED = {
    "epochs": 1,
    "batch_size": 2,
    "grad_accum": 1,
    "learning_rate": 1e-4,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "max_steps": None,
}
# small steps: the tiny model's weights are ~0.02, and negation only mirrors the fine-tune's effect
# on the forget NLL while tau stays in the near-linear regime
FINETUNE = {"epochs": 8, "learning_rate": 1e-3, "batch_size": None}
RANK = 2


def make_model():
    model = random_llama(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD).eval()
    set_trainable(model, 1)  # the last decoder layer trains, as model.trainable_layers does
    return model


def example(index: int, prompt: list[int], answer: list[int]) -> dict:
    ids = [BOS, *prompt, *answer, EOS]
    return {"input_ids": ids, "labels": [IGNORE] * (1 + len(prompt)) + [*answer, EOS], "index": index}


FORGET = [
    example(0, [10, 11], [20, 21, 22, 23]),
    example(1, [12, 13, 14], [24, 25]),
    example(2, [15], [26, 27, 28]),
    example(3, [16, 17], [29, 30, 31, 32, 33]),
]
RETAIN = [example(0, [40, 41], [42, 43]), example(1, [44], [45, 46, 47])]


def make_data(model) -> UnlearnData:
    return UnlearnData(
        model=model,
        forget=FORGET,
        retain=RETAIN,
        encode=lambda rows: [],
        pad_id=PAD,
        eval_batch_size=4,
        precision="fp32",
        seed=SEED,
    )


def run(method: TaskVector, model, tmp_path) -> dict:
    """Call the method exactly as the job does."""
    return unlearn(method, make_data(model), OmegaConf.create(SHARED), tmp_path / "unlearn")


def params_of(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def forget_nll(model) -> float:
    with torch.no_grad():
        return mean_nll(model, collate_qa(FORGET, PAD)).item()


def assert_plain_model(model, names: list[str], trainable: list[str]) -> None:
    """No peft wrapper or attribute is left: the same plain LlamaForCausalLM with its own parameters."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from transformers import LlamaForCausalLM

    assert type(model) is LlamaForCausalLM
    assert not any(isinstance(m, BaseTunerLayer) for m in model.modules())
    assert all(type(m) is torch.nn.Linear for n, m in model.named_modules() if n.endswith("_proj"))
    assert not hasattr(model, "peft_config")
    assert [n for n, _ in model.named_parameters()] == names
    assert [n for n, p in model.named_parameters() if p.requires_grad] == trainable


# ---- configuration ---------------------------------------------------------------------------


def test_finetune_settings_fall_back_to_the_shared_train_cfg():
    cfg = finetune_cfg(OmegaConf.create(SHARED), {"epochs": 5, "learning_rate": None, "batch_size": 7})
    assert cfg.epochs == 5 and cfg.batch_size == 7
    assert cfg.learning_rate == SHARED["learning_rate"] and cfg.lr_scheduler == "constant"


def test_config_instantiates():
    method = build(compose_cfg("method=task_vector").method, Method, "method")
    assert isinstance(method, TaskVector)
    assert method.variant == "full" and method.lam == 1.0 and method.rank == 8
    assert method.finetune == {"epochs": 5, "learning_rate": None, "batch_size": None}
    assert method.lora_alpha == 16.0


def test_unknown_variant_is_a_config_error():
    with pytest.raises(ValueError, match="method.variant"):
        TaskVector(variant="sparse")


# ---- the arithmetic --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["full", "svd", "lora"])
def test_lam_zero_returns_the_original_weights(variant, tmp_path):
    model = make_model()
    names = [n for n, _ in model.named_parameters()]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    before = params_of(model)
    method = TaskVector(lam=0.0, variant=variant, rank=RANK, finetune=FINETUNE)
    stats = run(method, model, tmp_path)
    after = params_of(model)
    assert all(torch.equal(after[n], before[n]) for n in names)
    assert stats["variant"] == variant and stats["steps"] == 8 * 2  # 4 examples, batch 2, 8 epochs
    assert stats["tau_norm"] > 0  # the fine-tune did move: lam=0 is what kept the weights
    assert_plain_model(model, names, trainable)


def test_full_variant_is_two_theta0_minus_theta_ft(tmp_path):
    model = make_model()
    twin = copy.deepcopy(model)
    theta0 = params_of(model)
    method = TaskVector(lam=1.0, variant="full", finetune=FINETUNE)
    stats = run(method, model, tmp_path)
    theta = params_of(model)

    # theta_ft re-derived: the same fine-tune on a copy through the shared trainer, same seed
    cfg = OmegaConf.create({**SHARED, "epochs": 8, "learning_rate": 1e-3})
    loss = lambda m, b: (mean_nll(m, b), {})  # noqa: E731
    ft_stats = train(twin, ListDataset(FORGET), collate_single(PAD), loss, cfg, SEED, "fp32", tmp_path / "ft", "ft")
    theta_ft = params_of(twin)
    assert stats["steps"] == ft_stats["steps"] == 16
    assert stats["train_loss"] == pytest.approx(ft_stats["train_loss"], rel=1e-5)

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(method.tau) == trainable
    for name, value in theta.items():
        if name in trainable:
            torch.testing.assert_close(value, 2 * theta0[name] - theta_ft[name], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(theta0[name] - value, method.tau[name], atol=1e-6, rtol=1e-5)
        else:  # frozen: never moves
            assert torch.equal(value, theta0[name])
    expected_norm = sum(float((theta_ft[n] - theta0[n]).double().pow(2).sum()) for n in trainable) ** 0.5
    assert stats["tau_norm"] == pytest.approx(expected_norm, rel=1e-4)


@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_lam_scales_the_task_vector(lam, tmp_path):
    model = make_model()
    theta0 = params_of(model)
    method = TaskVector(lam=lam, variant="full", finetune=FINETUNE)
    run(method, model, tmp_path)
    for name, value in params_of(model).items():
        if name in method.tau:
            torch.testing.assert_close(theta0[name] - value, lam * method.tau[name], atol=1e-6, rtol=1e-5)


def test_svd_variant_negates_the_best_rank_r_approximation(tmp_path):
    model = make_model()
    twin = copy.deepcopy(model)
    theta0 = params_of(model)
    method = TaskVector(lam=1.0, variant="svd", rank=RANK, finetune=FINETUNE)
    run(method, model, tmp_path)
    full = TaskVector(lam=1.0, variant="full", finetune=FINETUNE)
    run(full, twin, tmp_path)  # same model, seed and data: the same fine-tune, so the same full tau

    assert set(method.tau) == set(full.tau)
    matrices = 0
    for name, tau in method.tau.items():
        full_tau = full.tau[name]
        if tau.ndim == 2:
            matrices += 1
            assert int(torch.linalg.matrix_rank(full_tau)) > RANK  # the cut is not a no-op
            assert int(torch.linalg.matrix_rank(tau)) <= RANK
            u, s, vh = torch.linalg.svd(full_tau.double(), full_matrices=False)
            best = u[:, :RANK] @ torch.diag(s[:RANK]) @ vh[:RANK]
            torch.testing.assert_close(tau.double(), best, atol=1e-6, rtol=1e-4)
        else:  # norm gains are kept whole
            torch.testing.assert_close(tau, full_tau)
    assert matrices == 7  # q, k, v, o, gate, up, down of the trainable layer
    for name, value in params_of(model).items():
        if name in method.tau:
            torch.testing.assert_close(theta0[name] - value, method.tau[name], atol=1e-6, rtol=1e-5)
        else:
            assert torch.equal(value, theta0[name])


def test_low_rank_helper():
    m = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    assert int(torch.linalg.matrix_rank(low_rank(m, 1))) == 1
    torch.testing.assert_close(low_rank(m, 10), m, atol=1e-5, rtol=1e-5)  # rank beyond the shape: unchanged


def test_lora_variant_negates_a_rank_r_delta_and_leaves_a_plain_model(tmp_path):
    model = make_model()
    names = [n for n, _ in model.named_parameters()]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    theta0 = params_of(model)
    method = TaskVector(lam=1.0, variant="lora", rank=RANK, finetune=FINETUNE)
    stats = run(method, model, tmp_path)
    assert_plain_model(model, names, trainable)
    theta = params_of(model)

    projections = [n for n in trainable if n.endswith("_proj.weight")]
    assert sorted(method.tau) == sorted(projections) and len(projections) == 7
    for name, tau in method.tau.items():
        assert tau.shape == theta0[name].shape
        assert 0 < int(torch.linalg.matrix_rank(tau)) <= RANK
        torch.testing.assert_close(theta0[name] - theta[name], tau, atol=1e-6, rtol=1e-5)
    for name in names:  # norms and every frozen parameter stay at theta_0
        if name not in method.tau:
            assert torch.equal(theta[name], theta0[name])
    assert stats["tau_norm"] > 0 and stats["steps"] == 16
    # still an ordinary model that runs
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.tensor([[BOS, 10, 11]])).logits).all()


def test_lora_with_nothing_trainable_is_a_config_error(tmp_path):
    model = make_model()
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable nn.Linear"):
        run(TaskVector(variant="lora", rank=RANK, finetune=FINETUNE), model, tmp_path)


# ---- the effect ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["full", "svd", "lora"])
def test_negation_raises_the_forget_nll(variant, tmp_path):
    model = make_model()
    nll_theta0 = forget_nll(model)
    method = TaskVector(lam=1.0, variant=variant, rank=RANK, finetune=FINETUNE)
    run(method, model, tmp_path)
    nll_negated = forget_nll(model)

    # theta_0 + tau (the fine-tuned model, for the full variant exactly theta_ft) memorised the forget set
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tau in method.tau.items():
            params[name].add_(2 * tau)  # theta_0 - tau + 2 tau
    nll_finetuned = forget_nll(model)

    assert nll_finetuned < nll_theta0 < nll_negated
