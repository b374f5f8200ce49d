"""``generation.backend=vllm``: where it can run, and refusing it at config check where it cannot.

vLLM needs its package and a CUDA device; without either the job stops before any stage with one
error saying which is missing. The generation itself is :mod:`runner.decoding.vllm_generate`.
"""

from __future__ import annotations

import importlib.util

import torch

from runner.errors import ConfigError


def unavailable_reason() -> str | None:
    """Why vLLM cannot run in this process (None when it can)."""
    if importlib.util.find_spec("vllm") is None:
        return "the vllm package is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device is visible (vLLM's backend here is CUDA)"
    return None


def check_available() -> None:
    why = unavailable_reason()
    if why is not None:
        raise ConfigError(
            "generation.backend",
            f"vllm cannot run here: {why}",
            "set generation.backend=hf (the compiled static-cache loop), or run on a GPU node with `pip install vllm`",
        )
