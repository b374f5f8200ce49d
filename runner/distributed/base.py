"""The contract of a distributed strategy: how the job's processes share one training run.

A strategy is chosen with ``distributed=<option>`` (``conf/distributed/*.yaml``: ``_target_`` plus
options); ``distributed: null`` (``distributed=none``) is one process. The job builds it once
(``runner.distributed.build_strategy``), calls ``setup`` before the first collective, and hands
it to every training stage: ``runner.training.train`` asks it for the trainer's DeepSpeed config
and lets it prepare the model before training and restore it after.

Outside ``train`` the model is whole (unpartitioned) on every rank, under every strategy, so
evaluation, the methods' reference quantities and the caches see an ordinary module.
"""

from __future__ import annotations

import abc
import datetime
import logging
import os

import torch

from runner.distributed.ranks import env_int, free_port, local_rank, rank, slurm_to_torch_env, world_size
from runner.options import Range, check_number

log = logging.getLogger(__name__)


class Strategy(abc.ABC):
    """One way of running the trainer across processes.

    ``nproc_per_node``: local ranks ``python -m runner`` starts itself (>1 without torchrun or Slurm
    tasks); ``timeout_minutes``: how long a collective waits (rank 0 evaluates alone while the
    others wait at their next one).
    """

    #: whether training goes through DeepSpeed's engine (which keeps fp32 master weights itself)
    uses_deepspeed: bool = False

    def __init__(self, nproc_per_node: int = 1, timeout_minutes: int = 180):
        for key, value in (("nproc_per_node", nproc_per_node), ("timeout_minutes", timeout_minutes)):
            check_number(f"distributed.{key}", value, Range(low=1, whole=True, example="1"))
        self.nproc_per_node, self.timeout_minutes = nproc_per_node, timeout_minutes

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The option's name in conf/distributed (``none`` for one process): what a method lists in ``strategies``."""

    @abc.abstractmethod
    def deepspeed_config(self, train_cfg, precision: str) -> dict | None:
        """The DeepSpeed config of one training stage (``train_cfg``: its trainer settings); None: a plain Trainer."""

    @abc.abstractmethod
    def before_training(self, model: torch.nn.Module):
        """Whatever ``after_training`` needs to give the model back as it was (called just before the trainer runs)."""

    @abc.abstractmethod
    def after_training(self, trainer, model: torch.nn.Module, before, gather: bool = True) -> None:
        """Make ``model`` an ordinary whole module again after ``trainer`` ran (``before``: from ``before_training``).

        ``gather=False``: training failed and the job ends, so no collective that other ranks would never join.
        """

    def training_precision(self, precision: str) -> str:
        """The precision a training stage really uses under this strategy (the run's, unless the strategy can't)."""
        return precision

    def setup(self) -> None:
        """Bring the process group up (once per process), where the strategy or the world size needs one."""
        slurm_to_torch_env()
        if self.uses_deepspeed and not torch.cuda.is_available():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator (gloo collectives)
        if torch.distributed.is_initialized() or (world_size() == 1 and not self.uses_deepspeed):
            return
        if world_size() == 1:  # DeepSpeed on one process (e.g. ZeRO-Offload on one GPU) still wants a group
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(free_port()))
            os.environ.setdefault("RANK", "0")
            os.environ.setdefault("WORLD_SIZE", "1")
            os.environ.setdefault("LOCAL_RANK", "0")
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank())
        # rank 0 evaluates alone while the others wait at their next collective: a generous timeout
        timeout = datetime.timedelta(minutes=self.timeout_minutes)
        torch.distributed.init_process_group(backend=backend, timeout=timeout)
        log.info("process group up: rank %d of %d (%s)", rank(), world_size(), backend)


def several_processes_asked(nproc_per_node: int) -> bool:
    """More than one process: asked for in the config, or already started so (torchrun, Slurm tasks)."""
    return nproc_per_node > 1 or env_int("WORLD_SIZE", 1) > 1
