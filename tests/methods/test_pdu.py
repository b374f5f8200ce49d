"""PDU (runner/methods/pdu.py): the forget loss and the dual update by hand, lambda per step, per epoch and after
the warm-up, eps from theta_0, its defaults and option checks."""

from __future__ import annotations

import pytest
import torch

from runner.errors import ConfigError
from runner.methods.pdu import PDU, dual_update, logit_gap_loss
from runner.scoring import mean_nll
from runner.training import collate_pairs
from tests.conftest import compose_cfg, toy_batch, toy_data


def test_logit_gap_loss_by_hand():
    logits = torch.tensor([[1.0, 2.0, 3.0, 6.0], [2.0, 2.0, 2.0, 2.0]])  # gaps 6 - 3 = 3 and 0
    assert logit_gap_loss(logits).item() == pytest.approx((9 + 0) / 2)
    assert logit_gap_loss(torch.zeros(0, 4)).item() == 0.0


def test_dual_update_is_projected():
    assert dual_update(1.0, 0.25, 1.0) == 1.25
    assert dual_update(1.0, -3.0, 0.5) == 0.0  # max(0, 1 - 1.5)


def _step(method, model, batch):
    with torch.no_grad():
        return list(method.loss_parts(model, batch))


def test_lambda_per_step(toy_llama):
    data = toy_data(toy_llama)
    batch = toy_batch(data)
    with torch.no_grad():
        retain = mean_nll(toy_llama, batch["retain"]).item()
    eps = retain - 0.2  # the constraint is violated by 0.2
    method = PDU(retain_loss_eps=eps, dual_step_size=0.5, dual_warmup_epochs=0, gamma=2.0, alpha=1.0)
    (forget, f_terms), (shifted, r_terms) = _step(method, toy_llama, batch)
    assert forget.item() == pytest.approx(2.0 * f_terms["pdu_forget"])
    assert r_terms["pdu_dual"] == 1.0 and shifted.item() == pytest.approx(1.0 * 0.2, rel=1e-4)
    assert method.dual == pytest.approx(1.0 + 0.5 * 0.2, rel=1e-4)  # lambda_1, used by the next step
    (_, _), (shifted, r_terms) = _step(method, toy_llama, batch)
    assert r_terms["pdu_dual"] == pytest.approx(1.1, rel=1e-4)
    assert shifted.item() == pytest.approx(1.1 * 0.2, rel=1e-3)
    assert method.dual == pytest.approx(1.2, rel=1e-4)


def test_warmup_then_per_epoch_mean(toy_llama):
    data = toy_data(toy_llama)
    batches = [toy_batch(data), toy_batch(data, forget_ids=(1, 2, 3), retain_ids=(0, 0, 1))]
    with torch.no_grad():
        retains = [mean_nll(toy_llama, b["retain"]).item() for b in batches]
    for upon in ("step", "epoch"):
        method = PDU(retain_loss_eps=0.5, dual_update_upon=upon, dual_warmup_epochs=1)
        method.epoch_begins(0)
        for b in batches:
            _step(method, toy_llama, b)
        assert method.dual == 1.0  # the warm-up epoch: lambda stays at alpha
        method.epoch_begins(1)
        if upon == "epoch":  # the mean violation of the epoch just done
            mean = sum(r - 0.5 for r in retains) / 2
            assert method.dual == pytest.approx(max(0.0, 1.0 + mean), rel=1e-5)
        else:  # per step from now on
            assert method.dual == 1.0
            _step(method, toy_llama, batches[0])
            assert method.dual == pytest.approx(1.0 + retains[0] - 0.5, rel=1e-5)


def test_fixed_lambda_without_primal_dual(toy_llama):
    method = PDU(retain_loss_eps=0.0, primal_dual=False, dual_warmup_epochs=0, alpha=0.3)
    batch = toy_batch(toy_data(toy_llama))
    for _ in range(2):
        _step(method, toy_llama, batch)
    method.epoch_begins(1)
    assert method.dual == 0.3


def test_eps_defaults_to_theta0_retain_nll(toy_llama):
    data = toy_data(toy_llama)
    method = PDU()
    method.prepare(data)
    everything = collate_pairs(data.pad_id)([{"forget": r, "retain": r} for r in data.retain])["retain"]
    with torch.no_grad():
        expected = mean_nll(toy_llama, everything).item()  # token mean over every retain answer
    assert method.eps == pytest.approx(expected, rel=1e-5)
    kl = PDU(retain_loss="kl")
    kl.prepare(data)
    assert kl.eps == 0.0


def test_yaml_defaults_and_option_checks():
    assert dict(compose_cfg("method=pdu").method) == {
        "_target_": "runner.methods.pdu.PDU",
        "retain_loss_eps": None,
        "primal_dual": True,
        "dual_step_size": 1.0,
        "dual_update_upon": "step",
        "dual_warmup_epochs": 5,
        "gamma": 1.0,
        "alpha": 1.0,
        "retain_loss": "nll",
    }
    bad = {
        "dual_update_upon": "batch",
        "dual_step_size": -1.0,
        "alpha": -0.5,
        "dual_warmup_epochs": 1.5,
        "retain_loss_eps": "low",
    }
    for key, value in bad.items():
        with pytest.raises(ConfigError, match=f"method.{key}"):
            PDU(**{key: value})
