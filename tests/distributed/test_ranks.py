"""Ranks from the environment: Slurm tasks become torch ranks."""

from __future__ import annotations

from runner.distributed import ranks


def test_slurm_tasks_become_torch_ranks():
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "2(x2)"}
    env |= {"SLURM_JOB_ID": "1234", "SLURM_JOB_NODELIST": "gpu07"}
    assert ranks.slurm_to_torch_env(env)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"]) == ("3", "4", "1", "2")
    assert env["MASTER_PORT"] == str(20000 + 1234) and env["MASTER_ADDR"]
    assert not ranks.slurm_to_torch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"})  # one task: no ranks
    assert not ranks.slurm_to_torch_env({"RANK": "0", "SLURM_NTASKS": "4", "SLURM_PROCID": "0"})  # torchrun's


def test_rank_and_world_size_read_the_environment_before_a_group_exists(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert (ranks.rank(), ranks.world_size(), ranks.is_main_process()) == (1, 2, False)
    monkeypatch.delenv("RANK")
    assert ranks.is_main_process() and ranks.from_main("mine") == "mine"  # no group: nothing to broadcast
