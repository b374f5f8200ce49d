"""The job's generation settings (``generation.compile``, ``generation.backend``) and what each call chose.

The job sets them once (:func:`configure`, before any stage); every generating call reads them
(:func:`plan`) and reports what it did (:func:`record`), and the job writes :func:`summary` into
results.json. Module state rather than an argument threaded through every benchmark: the settings are
the job's, like its precision, and the callers (TOFU, MUSE, reasoning, traces, attacks) need not know.

``compile: auto`` compiles when the decode steps a call will run (batches x cap) repay the compile
time: ``BREAK_EVEN_STEPS[device type]``, compile seconds over seconds saved per step. On a CPU the compiled
step of SmolLM2-135M measured no faster than the eager one (docs/generation.md: the step is matmul-bound
there, and the compile took minutes), so ``auto`` keeps CPUs eager, as ``precision=auto`` keeps them in
fp32; on CUDA the step runs as one CUDA graph (launch overhead is what a small model's decode step is
made of). An inductor that cannot run (no C++ compiler on a CPU) is never chosen, with the reason recorded.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from runner.errors import ConfigError

log = logging.getLogger(__name__)

COMPILES = ("auto", True, False)
BACKENDS = ("hf", "vllm")
# decode steps that repay a compile, per device type; None: never under auto (measured no faster there)
BREAK_EVEN_STEPS = {"cpu": None, "cuda": 4096}
CPU_NOT_FASTER = "auto: on a CPU the compiled step measured no faster than eager (docs/generation.md)"


@dataclass
class Settings:
    compile: str | bool = "auto"
    backend: str = "hf"
    calls: list[dict] = field(default_factory=list)


_settings = Settings()


def _compile_value(value):
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def check_config(gen) -> None:
    """``generation.compile`` and ``generation.backend`` (a ConfigError naming the key and the fix)."""
    gen = gen or {}
    mode = _compile_value(gen.get("compile", "auto"))
    if mode not in COMPILES:
        raise ConfigError(
            "generation.compile", f"must be auto, true or false, got {mode!r}", "e.g. generation.compile=auto"
        )
    if mode is True:  # refused now, not at the first generation hours into the job
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        usable, why = inductor_usable(device)
        if not usable:
            raise ConfigError(
                "generation.compile", f"cannot compile here: {why}", "set generation.compile=auto or false"
            )
    backend = gen.get("backend", "hf")
    if backend not in BACKENDS:
        raise ConfigError("generation.backend", f"`{backend}` is not a backend", "use hf (the default) or vllm")
    if backend == "vllm":
        from runner.decoding.vllm_backend import check_available

        check_available()


def configure(gen, cache_dir: str | Path | None) -> None:
    """The job's settings; inductor's on-disk cache goes under the runner's cache dir (a rerun compiles nothing)."""
    global _settings
    gen = gen or {}
    _settings = Settings(_compile_value(gen.get("compile", "auto")), str(gen.get("backend", "hf")))
    if cache_dir is not None and not _user_inductor_dir():
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(cache_dir) / "inductor")


def _user_inductor_dir() -> bool:
    """Whether TORCHINDUCTOR_CACHE_DIR is the user's: inductor writes its default (under /tmp) into the
    environment the first time it looks, and importing transformers' attention code makes it look."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    value = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    return bool(value) and os.path.abspath(value) != os.path.abspath(default_cache_dir())


def settings() -> Settings:
    return _settings


def inductor_usable(device: torch.device) -> tuple[bool, str]:
    """Whether torch.compile's inductor can build kernels for ``device``, and if not, why."""
    if device.type == "cuda":
        return True, "CUDA (triton kernels)"
    if device.type != "cpu":
        return False, f"no compiled step for {device.type} devices"
    from torch._inductor import config as inductor_config

    compiler = inductor_config.cpp.cxx[0] if isinstance(inductor_config.cpp.cxx, tuple) else None
    for name in (compiler, "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return True, f"CPU, C++ compiler {name}"
    return False, "inductor needs a C++ compiler on a CPU and none was found (install g++)"


def plan(device: torch.device, steps: int) -> tuple[bool, str]:
    """(compile?, why) for a call that will run about ``steps`` decode steps."""
    mode = _settings.compile
    usable, why = inductor_usable(device)
    if mode is False:
        return False, "generation.compile=false"
    if mode is True:
        if not usable:
            raise ConfigError(
                "generation.compile", f"cannot compile here: {why}", "set generation.compile=auto or false"
            )
        return True, "generation.compile=true"
    if not usable:
        return False, f"auto: {why}"
    even = BREAK_EVEN_STEPS.get(device.type)
    if even is None:
        return False, CPU_NOT_FASTER if device.type == "cpu" else f"auto: no measured break-even on {device.type}"
    if steps < even:
        return False, f"auto: {steps} decode steps < {even} that repay compiling"
    return True, f"auto: {steps} decode steps >= {even} that repay compiling"


def record(call: dict) -> None:
    """One generating call's choice and cost, for results.json."""
    _settings.calls.append(call)
    log.info(
        "%s: %s (%s), %d tokens in %.1f s (%.1f tok/s)%s",
        call["desc"],
        "compiled static-cache step" if call["compiled"] else "eager",
        call["why"],
        call["tokens"],
        call["seconds"],
        call["tokens"] / max(call["seconds"], 1e-9),
        f", compile {call['compile_seconds']:.1f} s" if call["compiled"] else "",
    )


def summary() -> dict:
    """The job's generation record: the settings and each call's decision, compile seconds and throughput."""
    calls = _settings.calls
    return {
        "compile": _settings.compile,
        "backend": _settings.backend,
        "compile_seconds": round(sum(c.get("compile_seconds", 0.0) for c in calls), 2),
        "calls": calls,
    }
