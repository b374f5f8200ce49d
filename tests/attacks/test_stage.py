"""The attack stage: finetune_attack=none is a null node, checks at validation, and the inputs an attack reads."""

from __future__ import annotations

import pytest

from runner import job_kinds
from runner.attacks import attack_inputs, check_config
from runner.errors import ConfigError
from tests.attacks.conftest import FIXTURES
from tests.conftest import compose_cfg


def test_none_is_a_null_node_and_checks_nothing():
    assert compose_cfg().finetune_attack is None
    assert compose_cfg("finetune_attack=none").finetune_attack is None
    assert compose_cfg("~finetune_attack").get("finetune_attack") is None
    check_config(None)
    assert attack_inputs(None) == []


def test_attack_settings_without_an_attack_are_refused():
    cfg = compose_cfg("experiment=ilu_wmdp_npo", "finetune_attack=none")  # the experiment's attack block stays
    with pytest.raises(ConfigError, match=r"finetune_attack=none runs no attack.*eval_examples"):
        job_kinds.validate(cfg)


def test_the_attacks_data_is_part_of_its_inputs():
    sst2 = compose_cfg("finetune_attack=sst2", f"finetune_attack.source={FIXTURES}").finetune_attack
    check_config(sst2)  # the fixtures hold both splits
    assert len(attack_inputs(sst2)) == 2
    assert len(attack_inputs(compose_cfg("finetune_attack=gsm8k").finetune_attack)) == 2
    assert attack_inputs(compose_cfg("finetune_attack=relearn").finetune_attack) == []  # the benchmark's rows
