"""Who starts the ranks: ``distributed.nproc_per_node`` in a process nobody started as a rank."""

from __future__ import annotations

from runner.distributed.launch import should_self_launch


def test_self_launch_only_where_no_launcher_started_ranks(monkeypatch):
    for var in ("RANK", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    assert should_self_launch(2) and not should_self_launch(1)
    monkeypatch.setenv("SLURM_NTASKS", "2")  # Slurm started a task per rank
    assert not should_self_launch(2)
    monkeypatch.delenv("SLURM_NTASKS")
    monkeypatch.setenv("RANK", "0")  # torchrun started this rank
    assert not should_self_launch(2)
