"""The robustness battery (config group ``robustness_attack``): attacks that probe whether an unlearned model's
forgotten answers come back without training it. ``base`` holds the contract and the shared QA probe;
``quantize``, ``prefill``, ``in_context`` and ``gcg`` the attacks; ``stage`` runs them on the unlearned model
and its controls (target, retain) and computes recovery."""

from runner.robustness.base import KEY, ProbeContext, RobustnessAttack
from runner.robustness.stage import check_config, check_data, recovery, run_battery

__all__ = ["KEY", "ProbeContext", "RobustnessAttack", "check_config", "check_data", "recovery", "run_battery"]
