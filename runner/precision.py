"""Which compute precision a job uses: ``precision: auto`` picks bfloat16 only where it pays.

bfloat16 autocast is a large win on CUDA GPUs that compute it natively and a large loss where
it is emulated: on an AVX2-only CPU a training step of the default model is tens of times
slower than in float32. On CPUs that do have it (AMX, AVX512-BF16) autocast still re-casts
every frozen float32 weight at every op, and ``make bench`` measured the default model's NPO
step no faster in bf16 than in fp32 there (1.29x slower on a 2-core AMX machine). So ``auto``
is bf16 on a CUDA GPU with native bfloat16 and fp32 on every CPU; the default never depends on
the machine the defaults were written on.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)
CHOICES = ("auto", "fp32", "bf16")
_warned: set[str] = set()


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` computes bfloat16 natively, and the reason in words."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"CUDA device {name} computes bfloat16 natively"
        return False, f"CUDA device {name} has no native bfloat16"
    if device.type == "cpu":
        caps = cpu_capabilities()
        native = [flag for flag in ("amx_bf16", "avx512_bf16") if caps.get(flag)]
        if native:
            return True, f"CPU with native bfloat16 ({', '.join(native)})"
        return False, f"CPU without native bfloat16 ({cpu_vector_isa(caps)})"
    return False, f"{device.type} device: bfloat16 support not probed, float32 is the safe choice"


def cpu_capabilities() -> dict:
    """The CPU feature flags torch detected (empty on a torch too old to report them)."""
    probe = getattr(torch.cpu, "get_capabilities", None)
    return dict(probe()) if probe is not None else {}


def cpu_vector_isa(caps: dict) -> str:
    for flag, label in (("avx512_f", "AVX512"), ("avx2", "AVX2"), ("avx", "AVX")):
        if caps.get(flag):
            return label
    return caps.get("architecture", "no x86 vector extensions reported")


def resolve(asked: str, device: torch.device) -> dict:
    """``{"asked", "used", "why"}`` for a job's ``precision`` setting on ``device``."""
    native, reason = native_bf16(device)
    if asked == "auto":
        if native and device.type == "cpu":
            reason += ", but bf16 autocast is no faster than fp32 on CPUs (make bench: precision)"
        return {"asked": asked, "used": "bf16" if native and device.type == "cuda" else "fp32", "why": reason}
    if asked == "bf16" and not native and reason not in _warned:
        _warned.add(reason)
        log.warning(
            "precision=bf16 where there is no native bfloat16 (%s): it is emulated and runs many times "
            "slower than float32; use precision=auto (or fp32) on this machine",
            reason,
        )
    return {"asked": asked, "used": asked, "why": "set explicitly" + ("" if native else f" ({reason})")}
