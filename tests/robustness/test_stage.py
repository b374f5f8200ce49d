"""The battery's stage: options build, bad input stops at config check, recovery is computed against the target
under the same attack, and the unlearned weights are back afterwards."""

from __future__ import annotations

import pytest
import torch

from runner import job_kinds
from runner.errors import ConfigError
from runner.models import load_state
from runner.robustness import RobustnessAttack, recovery, run_battery
from runner.robustness.gcg import GcgAttack
from runner.robustness.in_context import InContextAttack
from runner.robustness.prefill import PrefillAttack
from runner.robustness.quantize import QuantizeAttack
from runner.robustness.stage import build_attacks
from tests.conftest import compose_cfg
from tests.robustness.conftest import probe

OPTIONS = {
    "quantize": [QuantizeAttack],
    "prefill": [PrefillAttack],
    "in_context": [InContextAttack],
    "gcg": [GcgAttack],
    "gcg_universal": [GcgAttack],
    "battery": [QuantizeAttack, PrefillAttack, InContextAttack, GcgAttack, GcgAttack],
    "none": [],
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_every_option_builds_its_attacks(option):
    attacks = build_attacks(compose_cfg(f"robustness_attack={option}").robustness_attack)
    assert [type(a) for a in attacks] == OPTIONS[option]
    assert all(isinstance(a, RobustnessAttack) for a in attacks)
    if option == "battery":
        assert [a.name for a in attacks] == ["quantize", "prefill", "in_context", "gcg", "gcg_universal"]
        assert attacks[-1].mode == "universal" and attacks[-2].mode == "individual"


def test_the_default_job_runs_no_battery():
    assert compose_cfg().robustness_attack is None
    assert build_attacks(None) == []


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["robustness_attack=quantize", "robustness_attack.quantize.bits=[8,3]"], "robustness_attack.quantize.bits"),
        (["robustness_attack=in_context", "robustness_attack.in_context.k=[0]"], "robustness_attack.in_context.k"),
        (["robustness_attack=gcg", "robustness_attack.gcg.search_width=0"], "robustness_attack.gcg.search_width"),
        (
            ["robustness_attack=[prefill,gcg]", "robustness_attack.prefill.fraction=[0.5]"],
            "robustness_attack.prefill.tokens",
        ),
    ],
)
def test_bad_options_fail_config_validation_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        job_kinds.validate(compose_cfg(*overrides))
    assert f"`{key}`" in str(err.value) and "Fix:" in str(err.value)


def test_an_evaluation_only_job_refuses_the_battery():
    with pytest.raises(ConfigError, match=r"`robustness_attack`.*method=none"):
        job_kinds.validate(compose_cfg("method=none", "benchmark=wmdp", "robustness_attack=prefill"))


def test_recovery_by_hand():
    assert recovery(0.5, 0.2, 0.8) == pytest.approx(0.5)  # (0.5 - 0.2) / (0.8 - 0.2)
    assert recovery(0.2, 0.2, 0.8) == 0.0
    assert recovery(0.9, 0.2, 0.8) == pytest.approx(7 / 6)  # beyond the target's own
    assert recovery(0.5, 0.3, 0.3) is None and recovery(0.5, 0.3, None) is None


def test_points_compare_with_the_target_under_the_same_attack_and_the_weights_come_back(tiny):
    ctx = probe(tiny)
    model = ctx.model
    unlearned = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(1)
    target = {n: p + 0.05 * torch.randn_like(p) for n, p in unlearned.items()}  # another model's weights
    loads = []
    controls = {"target": lambda: (loads.append("target"), load_state(model, target))}
    node = compose_cfg(
        "robustness_attack=[prefill,in_context]",
        "robustness_attack.prefill.tokens=[2]",
        "robustness_attack.prefill.questions=2",
        "robustness_attack.in_context.k=[1]",
        "robustness_attack.in_context.questions=2",
    ).robustness_attack
    out = run_battery(node, ctx, controls, restore=lambda: load_state(model, unlearned))
    assert loads == ["target"] and set(out["clean"]) == {"unlearned", "target"}
    assert [(p["attack"], p["strength"]) for p in out["points"]] == [("prefill", 2), ("in_context", 1)]
    for p in out["points"]:
        assert p["after"] == p["value"] and p["unlearned"] == out["clean"]["unlearned"][p["attack"]]
        assert p["target_after"] == p["controls"]["target"]["value"]
        assert p["recovery"] == recovery(p["after"], p["unlearned"], p["target_after"])
    assert all(torch.equal(p, unlearned[n]) for n, p in model.named_parameters())


def test_the_robustness_sweep_runs_five_methods_under_the_whole_battery():
    from omegaconf import OmegaConf

    from tests.conftest import ROOT

    params = OmegaConf.load(ROOT / "sweeps" / "robustness.yaml").hydra.sweeper.params
    assert params.method.split(",") == ["ga", "npo", "rmu", "simnpo", "ilu"] and params.robustness_attack == "battery"
    for method in params.method.split(","):
        cfg = compose_cfg(f"method={method}", "robustness_attack=battery")
        job_kinds.validate(cfg)
        assert cfg.benchmark.name == "tofu" and len(build_attacks(cfg.robustness_attack)) == 5
