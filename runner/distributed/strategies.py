"""The strategies of ``conf/distributed``: one process, and DeepSpeed's data parallel and ZeRO stages.

Every strategy but one process trains through DeepSpeed, even DDP: the method losses call
submodules directly (the LM head on answer tokens only, RMU stopping at layer l), which
bypasses torch DDP's forward and with it its gradient synchronisation; DeepSpeed's stage 0
reduces in backward instead (conf/distributed/ddp.yaml).
"""

from __future__ import annotations

import logging

import torch

from runner.components import build
from runner.distributed.base import Strategy, several_processes_asked
from runner.distributed.deepspeed_config import build_deepspeed_config
from runner.distributed.ranks import world_size
from runner.distributed.surgery import release, snapshot
from runner.errors import ConfigError

log = logging.getLogger(__name__)

# the options' names, as methods list them in ``strategies`` (the default: every one)
STRATEGIES = ("none", "ddp", "zero1", "zero2", "zero3", "zero3_offload")
_SEVERAL = "choose distributed=ddp (or zero1|zero2|zero3|zero3_offload) for several processes"


class SingleProcess(Strategy):
    """One process, a plain Trainer: what ``distributed: null`` (``distributed=none``) means."""

    name = "none"

    def __init__(self, nproc_per_node: int = 1, timeout_minutes: int = 180):
        super().__init__(nproc_per_node, timeout_minutes)
        if several_processes_asked(nproc_per_node):
            raise ConfigError("distributed", "`none` runs one process, but several were asked for", _SEVERAL)

    def deepspeed_config(self, train_cfg, precision: str) -> None:
        return None

    def before_training(self, model: torch.nn.Module) -> None:
        return None

    def after_training(self, trainer, model: torch.nn.Module, before, gather: bool = True) -> None:
        pass  # the Trainer leaves an ordinary module behind


class DeepSpeedStrategy(Strategy):
    """Training through DeepSpeed's engine with the ZeRO block ``zero`` (its ``stage`` among ``stages``)."""

    uses_deepspeed = True
    stages: tuple[int, ...] = ()

    def __init__(self, zero: dict, nproc_per_node: int = 1, timeout_minutes: int = 180):
        super().__init__(nproc_per_node, timeout_minutes)
        stage = (zero or {}).get("stage")
        if stage not in self.stages:
            raise ConfigError(
                "distributed.zero.stage",
                f"{type(self).__name__} runs ZeRO stage {' or '.join(map(str, self.stages))}, not {stage!r}",
                "choose the conf/distributed option of the stage you want (ddp, zero1, zero2, zero3, zero3_offload)",
            )
        self.zero = dict(zero)

    @property
    def stage(self) -> int:
        return int(self.zero["stage"])

    def training_precision(self, precision: str) -> str:
        if precision == "bf16" and not torch.cuda.is_available():
            log.info("DeepSpeed on CPU trains in fp32 (precision=bf16 applies on GPUs)")
            return "fp32"
        return precision

    def deepspeed_config(self, train_cfg, precision: str) -> dict:
        return build_deepspeed_config(self.zero, train_cfg, self.training_precision(precision), world_size())

    def before_training(self, model: torch.nn.Module) -> dict:
        return snapshot(model)

    def after_training(self, trainer, model: torch.nn.Module, before, gather: bool = True) -> None:
        release(trainer, model, before, gather=gather)


class DDP(DeepSpeedStrategy):
    """Data parallel: every rank holds the whole model and optimizer; gradients are all-reduced (ZeRO stage 0)."""

    name = "ddp"
    stages = (0,)


class ZeRO(DeepSpeedStrategy):
    """ZeRO stage 1 (optimizer states), 2 (and gradients) or 3 (and parameters) partitioned across ranks."""

    stages = (1, 2, 3)

    @property
    def name(self) -> str:
        return f"zero{self.stage}"


class ZeRO3Offload(DeepSpeedStrategy):
    """ZeRO stage 3 with the optimizer states and parameters offloaded to CPU memory (DeepSpeed's CPU Adam)."""

    name = "zero3_offload"
    stages = (3,)

    def __init__(self, zero: dict, nproc_per_node: int = 1, timeout_minutes: int = 180):
        super().__init__(zero, nproc_per_node, timeout_minutes)
        if not self.zero.get("offload_optimizer") and not self.zero.get("offload_param"):
            raise ConfigError(
                "distributed.zero",
                "zero3_offload offloads nothing (no offload_optimizer or offload_param)",
                "use distributed=zero3 for ZeRO-3 without offloading",
            )


def build_strategy(node) -> Strategy:
    """The strategy ``node`` (the ``distributed`` config node) describes; one process where it is null."""
    if node is not None and "_target_" not in node and "nproc_per_node" in node:
        # `distributed=none` with options laid over it (+distributed.nproc_per_node=2): one process was chosen
        return SingleProcess(**{k: node[k] for k in ("nproc_per_node", "timeout_minutes") if k in node})
    return build(node, Strategy, "distributed") or SingleProcess()
