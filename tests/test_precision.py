"""precision=auto: bfloat16 only where the device computes it natively, and the record says what was used."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from runner import job
from runner import precision as P

CPU = torch.device("cpu")


def test_probe_agrees_with_the_kernel_cpu_flags():
    cpuinfo = Path("/proc/cpuinfo")
    native, why = P.native_bf16(CPU)
    if cpuinfo.exists():
        flags = set(next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split())
        assert native == bool(flags & {"avx512_bf16", "amx_bf16"})
    assert ("without" not in why) == native


def test_auto_is_bf16_only_on_a_gpu_with_native_bf16(monkeypatch):
    monkeypatch.setattr(P, "cpu_capabilities", lambda: {"avx": True, "avx2": True})
    assert P.resolve("auto", CPU) == {"asked": "auto", "used": "fp32", "why": "CPU without native bfloat16 (AVX2)"}
    # a CPU with AMX computes bf16 natively, but autocast measured no faster there than fp32 (make bench)
    monkeypatch.setattr(P, "cpu_capabilities", lambda: {"avx2": True, "avx512_f": True, "amx_bf16": True})
    chosen = P.resolve("auto", CPU)
    assert chosen["used"] == "fp32" and "amx_bf16" in chosen["why"] and "no faster" in chosen["why"]
    # the GPU branch, with the CUDA probe's two answers
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(P, "native_bf16", lambda device: (True, "CUDA device H100 computes bfloat16 natively"))
    assert P.resolve("auto", gpu)["used"] == "bf16"
    monkeypatch.setattr(P, "native_bf16", lambda device: (False, "CUDA device V100 has no native bfloat16"))
    assert P.resolve("auto", gpu)["used"] == "fp32"
    # an explicit choice is honoured either way
    assert P.resolve("fp32", CPU)["used"] == "fp32"
    assert P.resolve("bf16", gpu)["used"] == "bf16"


def test_explicit_bf16_without_native_support_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(P, "cpu_capabilities", lambda: {"avx2": True})
    monkeypatch.setattr(P, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="runner.precision"):
        assert P.resolve("bf16", CPU)["used"] == "bf16"
        P.resolve("bf16", CPU)
    warnings = [r for r in caplog.records if "emulated" in r.getMessage()]
    assert len(warnings) == 1 and "precision=auto" in warnings[0].getMessage()


def test_the_run_record_carries_the_choice_and_every_stage_uses_it(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(P, "cpu_capabilities", lambda: {"avx2": True})
    result = job.run(tiny_cfg("precision=auto", "method=ga", "seed=23"), tmp_path)  # a seed no other test runs
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["precision"] == {"asked": "auto", "used": "fp32", "why": "CPU without native bfloat16 (AVX2)"}
    assert on_disk["config"]["precision"] == "fp32"  # what every stage was handed
    assert result["status"] == "completed"
    # asked the same computation again with precision=fp32: the stored result is reused, the record says how it was asked
    again = tmp_path / "again"
    job.run(tiny_cfg("precision=fp32", "method=ga", "seed=23"), again)
    reused = json.loads((again / "results.json").read_text())
    assert reused["reused_from"] and reused["precision"]["asked"] == "fp32"
