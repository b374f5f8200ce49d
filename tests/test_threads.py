"""threads: auto (runner/threads.py): cores from affinity and the cgroup quota, shared among local processes."""

from __future__ import annotations

import pytest

from runner import threads
from runner.errors import ConfigError


def test_cgroup_quota_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 cores
    assert threads.cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert threads.cgroup_cpu_limit(v1) == 2.0
    assert threads.cgroup_cpu_limit(tmp_path / "absent") is None


def test_usable_cores_is_capped_by_the_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a core: still one thread
    assert threads.usable_cores(tmp_path) == 1


def test_auto_divides_the_cores_among_local_ranks_and_parallel_jobs():
    assert threads.sharing_processes({"LOCAL_WORLD_SIZE": "2", "RUNNER_PARALLEL_JOBS": "3"}) == 6
    assert threads.sharing_processes({}) == 1
    assert threads.choose("auto", cores=16, processes=4)[0] == 4
    assert threads.choose("auto", cores=2, processes=3)[0] == 1  # never 0
    assert threads.choose(3, cores=16, processes=4) == (3, "threads=3")


def test_auto_leaves_the_cores_other_jobs_keep_busy_on_a_shared_machine():
    # 2 cores, load 10.7 from other jobs: measured 2.59 tok/s at one thread against 0.78 at two (docs/generation.md)
    n, why = threads.choose("auto", cores=2, processes=1, busy=10.7)
    assert n == 1 and "10.7 busy" in why
    assert threads.choose("auto", cores=16, processes=2, busy=4.0)[0] == 8  # 12 free: 8 each is still fine
    assert threads.choose("auto", cores=16, processes=1, busy=4.0)[0] == 12
    assert threads.choose("auto", cores=16, processes=1, busy=None)[0] == 16  # a dedicated allocation


@pytest.mark.parametrize("bad", [0, -1, "many", 1.5, True])
def test_a_bad_threads_setting_names_the_key(bad):
    with pytest.raises(ConfigError, match="threads"):
        threads.check_config(bad)
