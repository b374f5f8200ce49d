"""One process or many: ranks (``ranks``), starting local ranks (``launch``), the strategy contract
(``base``) and its options (``strategies``), the DeepSpeed config (``deepspeed_config``) and the
model's return to a plain module after DeepSpeed trained it (``surgery``).

The names other stages use are importable from here: ``distributed.is_main_process()``,
``distributed.build_strategy(cfg.distributed)``, ...
"""

from runner.distributed.base import Strategy
from runner.distributed.deepspeed_config import build_deepspeed_config, single_process_equivalent
from runner.distributed.launch import INTERRUPTED, launch_local, should_self_launch
from runner.distributed.ranks import (
    barrier,
    device,
    from_main,
    is_main_process,
    launch_info,
    local_rank,
    quiet_other_ranks,
    rank,
    seed_process,
    slurm_to_torch_env,
    world_size,
)
from runner.distributed.strategies import STRATEGIES, SingleProcess, build_strategy

__all__ = [
    "INTERRUPTED",
    "STRATEGIES",
    "SingleProcess",
    "Strategy",
    "barrier",
    "build_deepspeed_config",
    "build_strategy",
    "device",
    "from_main",
    "is_main_process",
    "launch_info",
    "launch_local",
    "local_rank",
    "quiet_other_ranks",
    "rank",
    "seed_process",
    "should_self_launch",
    "single_process_equivalent",
    "slurm_to_torch_env",
    "world_size",
]
