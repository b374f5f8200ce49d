"""One process or many: ranks, the process group, per-rank seeds, and the DeepSpeed config of a run.

``distributed=<none|ddp|zero1|zero2|zero3|zero3_offload>`` picks the strategy; the
ranks come from the environment, set by whoever started the processes:

- ``torchrun --nproc_per_node=N -m runner ...`` (RANK / WORLD_SIZE / LOCAL_RANK);
- ``python -m runner distributed.nproc_per_node=N ...``, which starts N ranks of itself
  with torchrun's environment (``launch_local``; signals reach every rank);
- Slurm with one task per GPU (``hydra/launcher=slurm``, ``tasks_per_node=N``):
  SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID become the torch variables.

What the ranks share and what they do not:

- All ranks run every stage, because training is collective; only rank 0 evaluates,
  writes ``results.json``, the caches and the logs (``is_main_process``).
- Outside ``training.train`` the model is whole (unpartitioned) on every rank.
  DeepSpeed partitions it for the duration of one ``train`` call; ``release`` then
  gathers the trained weights back into the plain module and removes every hook and
  attribute DeepSpeed added. So evaluation, the methods' reference quantities (NPO's
  log-probs, RMU's frozen activations, taken in ``prepare`` before training) and the
  caches see an ordinary module under every strategy.
- The DeepSpeed config is derived from the stage's trainer settings (batch size,
  gradient accumulation, clipping) and the run's precision; ``conf/distributed/*.yaml``
  hold only the ZeRO settings. bf16 on GPU; fp32 on CPU (``DS_ACCELERATOR=cpu``).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable

import torch

from runner.errors import ConfigError

log = logging.getLogger(__name__)
STRATEGIES = ("none", "ddp", "zero1", "zero2", "zero3", "zero3_offload")

# the strategy of the job in progress (set by ``setup``); ``training.train`` reads it
_active: dict = {"name": "none", "zero": None, "timeout_minutes": 180}


# ---- ranks ------------------------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.lstrip("-").isdigit() else default


def rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return _env_int("RANK", 0)


def world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return _env_int("WORLD_SIZE", 1)


def local_rank() -> int:
    return _env_int("LOCAL_RANK", 0)


def device() -> torch.device:
    """This rank's GPU, or the CPU."""
    return torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")


def is_main_process() -> bool:
    """Rank 0 evaluates, writes results.json, the caches and the logs."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()


def from_main(value):
    """Rank 0's ``value`` on every rank: decisions that must agree (cache hit or miss, job finished)."""
    if world_size() == 1 or not torch.distributed.is_initialized():
        return value
    box = [value if is_main_process() else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def slurm_to_torch_env(env: dict | None = None) -> bool:
    """Under Slurm with several tasks (one per GPU), export RANK / WORLD_SIZE / ... from the SLURM_* variables.

    Returns True when it did. Nothing changes where torchrun already set RANK, or where the job has one task
    (which may then start its own ranks with ``distributed.nproc_per_node``).
    """
    env = os.environ if env is None else env
    tasks = int(env.get("SLURM_NTASKS", "1") or 1)
    if "RANK" in env or tasks <= 1 or "SLURM_PROCID" not in env:
        return False
    env["RANK"] = env["SLURM_PROCID"]
    env["WORLD_SIZE"] = str(tasks)
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    env["LOCAL_WORLD_SIZE"] = env.get("SLURM_NTASKS_PER_NODE", str(tasks)).split("(")[0]
    env.setdefault("MASTER_ADDR", _first_slurm_host(env))
    # one port per job, the same on every task: derived from the job id
    env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0") or 0) % 20000))
    return True


def _first_slurm_host(env) -> str:
    nodes = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodes:
        return "127.0.0.1"
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return nodes.split(",")[0]


def launch_info() -> dict:
    """Where the job ran, for results.json: world size, host and the Slurm job it belongs to (if any)."""
    info = {"world_size": world_size(), "host": socket.gethostname()}
    slurm = {
        key: os.environ[var]
        for key, var in (
            ("job_id", "SLURM_JOB_ID"),
            ("array_job_id", "SLURM_ARRAY_JOB_ID"),
            ("array_task_id", "SLURM_ARRAY_TASK_ID"),
            ("restart_count", "SLURM_RESTART_COUNT"),
            ("partition", "SLURM_JOB_PARTITION"),
            ("nodelist", "SLURM_JOB_NODELIST"),
        )
        if os.environ.get(var)
    }
    if slurm:
        info["slurm"] = slurm
    return info


# ---- set-up ------------------------------------------------------------------------------------


def check_config(dist_cfg) -> None:
    name = dist_cfg.get("name", "none")
    if name not in STRATEGIES:
        raise ConfigError("distributed", f"unknown strategy `{name}`", f"use distributed={'|'.join(STRATEGIES)}")
    n = dist_cfg.get("nproc_per_node", 1)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError("distributed.nproc_per_node", f"must be a positive count, got {n!r}", "set it to 1..GPUs")
    if name == "none" and (n > 1 or _env_int("WORLD_SIZE", 1) > 1):
        raise ConfigError(
            "distributed",
            "`none` runs one process, but several were asked for",
            "choose distributed=ddp (or zero1|zero2|zero3|zero3_offload) for several processes",
        )


def uses_deepspeed() -> bool:
    """Every strategy but ``none`` trains through DeepSpeed (``ddp`` is its stage 0: see conf/distributed/ddp.yaml)."""
    return _active["name"] != "none"


def active_timeout_minutes() -> int:
    return int(_active["timeout_minutes"])


def setup(dist_cfg) -> None:
    """Make ``dist_cfg`` the strategy of the job and bring the process group up (once per process)."""
    check_config(dist_cfg)
    from omegaconf import OmegaConf

    zero = dist_cfg.get("zero")
    _active.update(
        name=dist_cfg.name,
        zero=OmegaConf.to_container(zero, resolve=True) if zero is not None else None,
        timeout_minutes=int(dist_cfg.get("timeout_minutes", 180)),
    )
    slurm_to_torch_env()
    if uses_deepspeed() and not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator (gloo collectives)
    if torch.distributed.is_initialized() or (world_size() == 1 and not uses_deepspeed()):
        return
    if world_size() == 1:  # DeepSpeed on one process (e.g. ZeRO-Offload on one GPU) still wants a group
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("LOCAL_RANK", "0")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
    # rank 0 evaluates alone while the others wait at their next collective: a generous timeout
    timeout = datetime.timedelta(minutes=_active["timeout_minutes"])
    torch.distributed.init_process_group(backend=backend, timeout=timeout)
    log.info("process group up: rank %d of %d (%s)", rank(), world_size(), backend)


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_process(seed: int) -> int:
    """Seed python, numpy and torch with ``seed + rank`` (after the group is up); returns that seed.

    Anything a rank draws for itself differs across ranks; draws that must agree
    (data order, the RMU control vector, coreset picks) use their own seeded generators.
    """
    import numpy as np

    own = int(seed) + rank()
    random.seed(own)
    np.random.seed(own % 2**32)
    torch.manual_seed(own)
    return own


def quiet_other_ranks() -> None:
    """Ranks other than 0 log warnings only, and not into the run directory's log file."""
    if is_main_process():
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    import transformers

    transformers.logging.set_verbosity_error()


# ---- launching local ranks ------------------------------------------------------------------------


def should_self_launch(dist_cfg) -> bool:
    """``distributed.nproc_per_node>1`` in a process nobody started as a rank: start the ranks ourselves."""
    return int(dist_cfg.get("nproc_per_node", 1)) > 1 and "RANK" not in os.environ and _env_int("SLURM_NTASKS", 1) <= 1


# Hydra settings of the parent that make no sense for the ranks: each rank is a plain run in the job's directory
_NOT_FOR_RANKS = (
    "hydra.run.",
    "hydra.sweep.",
    "hydra.mode",
    "hydra/launcher",
    "hydra.launcher.",
    "hydra/sweeper",
    "hydra.sweeper.",
)


INTERRUPTED = 130  # launch_local's code when a signal stopped the ranks


def launch_local(nproc: int, overrides: Iterable[str], run_dir: str, hydra_overrides: Iterable[str] = ()) -> int:
    """Run this job as ``nproc`` local ranks (one process each, as torchrun --standalone would); returns the exit code.

    The ranks get the job's own overrides, the command line's Hydra settings that shape the config
    (``hydra.searchpath``, ...), and ``hydra.run.dir`` so that they share the job's run directory;
    their environment is torchrun's (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR / MASTER_PORT on a free
    port). SIGTERM and SIGINT (Slurm's time-out, ``kill``, Ctrl-C) are passed on to every rank, which
    records ``interrupted``; the code is then ``INTERRUPTED``. When one rank fails, the others are
    stopped rather than left waiting at a collective. The ranks' own console lines are the only
    output: no launcher traceback.
    """
    kept_hydra = [o for o in hydra_overrides if not o.lstrip("+~").startswith(_NOT_FOR_RANKS)]
    cmd = [sys.executable, "-m", "runner", *overrides, *kept_hydra, f"hydra.run.dir={run_dir}"]
    log.info("starting %d local ranks: %s", nproc, " ".join(cmd))
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    base |= {"WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0"}
    base.setdefault("OMP_NUM_THREADS", "1")  # as torchrun: N ranks must not each take every core
    signalled = []

    def forward(signum, frame):
        signalled.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    procs: list[subprocess.Popen] = []
    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for r in range(nproc):
            # a session of their own: a terminal's Ctrl-C reaches the ranks once, through `forward`
            env = {**base, "RANK": str(r), "LOCAL_RANK": str(r)}
            procs.append(subprocess.Popen(cmd, env=env, start_new_session=True))
        return _wait_ranks(procs, signalled)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for p in procs:  # never leave a rank behind
            if p.poll() is None:
                p.kill()
                p.wait()


def _wait_ranks(procs: list, signalled: list, grace_s: float = 60.0) -> int:
    failed_at = None
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            break
        bad = [c for c in codes if c not in (None, 0)]
        if bad and failed_at is None:  # a rank failed: the others would wait at their next collective
            failed_at = time.monotonic()
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
        if failed_at is not None and time.monotonic() - failed_at > grace_s:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.2)
    if signalled:
        return INTERRUPTED
    first_bad = next((c for c in codes if c != 0), 0)
    return INTERRUPTED if first_bad in (INTERRUPTED, -signal.SIGTERM, -signal.SIGINT) else first_bad


# ---- DeepSpeed ------------------------------------------------------------------------------------


def training_precision(precision: str) -> str:
    """The precision a training stage really uses: DeepSpeed on CPU trains in fp32."""
    if precision == "bf16" and uses_deepspeed() and not torch.cuda.is_available():
        log.info("DeepSpeed on CPU trains in fp32 (precision=bf16 applies on GPUs)")
        return "fp32"
    return precision


def deepspeed_config(train_cfg, precision: str) -> dict | None:
    """The DeepSpeed config of one training stage of the job in progress; None when it does not use DeepSpeed."""
    if not uses_deepspeed():
        return None
    return build_deepspeed_config(_active["zero"] or {}, train_cfg, training_precision(precision), world_size())


def build_deepspeed_config(zero: dict, train_cfg, precision: str, n_ranks: int) -> dict:
    """DeepSpeed's config from the stage's trainer settings and the ZeRO block of ``conf/distributed``.

    Batch sizes, accumulation and clipping come from ``train_cfg`` (the same values the
    TrainingArguments get, so transformers' consistency check passes); bf16 from
    ``precision`` (after ``training_precision``). With the optimizer offloaded to CPU,
    DeepSpeed's own AdamW (its CPU Adam) replaces torch's, as ZeRO-Offload requires;
    "auto" lets transformers fill its learning rate, betas and weight decay from the trainer.
    """
    micro, accum = int(train_cfg["batch_size"]), int(train_cfg.get("grad_accum", 1) or 1)
    config = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "train_batch_size": micro * accum * n_ranks,
        "gradient_clipping": float(train_cfg["max_grad_norm"]),
        "bf16": {"enabled": precision == "bf16"},
        "zero_optimization": dict(zero),
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if (zero.get("offload_optimizer") or {}).get("device", "none") != "none":
        config["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
        }
    return config


def single_process_equivalent(train_cfg) -> dict:
    """``train_cfg`` as the one-process run with the same global batch (for cache keys shared across world sizes)."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(train_cfg, resolve=True) if not isinstance(train_cfg, dict) else dict(train_cfg)
    if world_size() > 1:
        plain["batch_size"] = int(plain["batch_size"]) * world_size()
    return plain


# ---- after a training stage: the model becomes an ordinary module again ----------------------------


def snapshot(model: torch.nn.Module) -> dict:
    """What the module looked like before training: its parameters' and submodules' attribute names."""
    return {
        "params": {id(p): set(vars(p)) for p in model.parameters()},
        "modules": {id(m): (set(vars(m)), type(m._parameters)) for m in model.modules()},
    }


def release(trainer, model: torch.nn.Module, before: dict, gather: bool = True) -> None:
    """Undo what DeepSpeed did to ``model`` during one ``train`` call.

    Under ZeRO-3 the trained weights are gathered (a collective: every rank calls this)
    and become the parameters' plain storage on every rank. Then the engine removes its
    hooks, and the attributes it attached to parameters and modules are deleted, so the
    next stage (evaluation, a cache save, the next ``train``) sees an ordinary module.
    ``gather=False`` (training failed: the job ends) skips the collective and leaves ZeRO-3 weights empty.
    """
    engine = getattr(trainer, "model_wrapped", None)
    if engine is None or not hasattr(engine, "zero_optimization_stage"):
        return
    params = list(model.parameters())
    if engine.zero_optimization_stage() == 3 and gather:
        import deepspeed

        full = []
        for p in params:  # one at a time: the whole model exists once, beside the shards, never twice
            with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                full.append(p.data.detach().clone())
    else:
        full = [p.data for p in params]
    engine.destroy()
    with torch.no_grad():
        for p, data in zip(params, full, strict=True):
            for attr in set(vars(p)) - before["params"].get(id(p), set()):
                delattr(p, attr)
            p.data = data
            p.grad = None
    for m in model.modules():
        names, params_type = before["modules"].get(id(m), (set(vars(m)), type(m._parameters)))
        for attr in set(vars(m)) - names:
            delattr(m, attr)
        if type(m._parameters) is not params_type:  # ZeRO-3 swaps in a dict that gathers on access
            m._parameters = params_type(dict.items(m._parameters))
    trainer.model_wrapped = trainer.deepspeed = trainer.optimizer = trainer.lr_scheduler = None
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # else the next from_pretrained would build a partitioned model
    try:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()  # the next stage may use another ZeRO stage
    except ImportError:  # pragma: no cover
        pass
