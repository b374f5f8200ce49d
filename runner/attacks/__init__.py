"""Fine-tuning attacks (config group ``finetune_attack``): ``base`` holds the contract, ``gsm8k``,
``classification`` and ``relearn`` the attacks of ``conf/finetune_attack``, ``stage`` ``run_attack``."""

from runner.attacks.base import AttackContext, FinetuneAttack
from runner.attacks.classification import ClassificationAttack
from runner.attacks.gsm8k import Gsm8kAttack
from runner.attacks.relearn import RelearnAttack
from runner.attacks.stage import attack_inputs, check_config, run_attack

__all__ = [
    "AttackContext",
    "ClassificationAttack",
    "FinetuneAttack",
    "Gsm8kAttack",
    "RelearnAttack",
    "attack_inputs",
    "check_config",
    "run_attack",
]
