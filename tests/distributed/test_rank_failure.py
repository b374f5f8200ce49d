"""A rank lost to a crash makes the job `failed` naming the rank, the signal or exit code, and the stage; only a
signal to the job is `interrupted` (runner/distributed/launch.py, job.record_rank_failure). The end-to-end case,
killing a real rank of a 2-rank run, is in tests/end_to_end/test_faults.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from runner import job
from runner.distributed.launch import INTERRUPTED, RanksEnded, _wait_ranks


def _procs(*codes: int) -> list[subprocess.Popen]:
    """Processes that end with ``codes`` (negative: killed by that signal)."""
    procs = []
    for code in codes:
        script = (
            f"import os, signal, time; time.sleep(0.3); os.kill(os.getpid(), {-code})"
            if code < 0
            else (f"import sys, time; time.sleep({0.3 if code else 2.0}); sys.exit({code})")
        )
        procs.append(subprocess.Popen([sys.executable, "-c", script]))
    return procs


def test_a_rank_that_crashes_is_reported_with_its_signal_and_a_signal_to_the_job_is_an_interruption():
    ended = _wait_ranks(_procs(0, -signal.SIGABRT), [])
    assert ended == RanksEnded(-signal.SIGABRT, 1, -signal.SIGABRT)
    assert ended.how() == "rank 1 was killed by SIGABRT"
    assert _wait_ranks(_procs(3, 0), []).how() == "rank 0 exited with code 3"
    assert _wait_ranks(_procs(0, -signal.SIGTERM), []).code == INTERRUPTED  # the rank got the job's signal
    assert _wait_ranks(_procs(0, 0), [signal.SIGINT]).code == INTERRUPTED  # the launcher got it


@pytest.mark.parametrize("status", ["interrupted", "running", "failed"])
def test_the_record_names_the_lost_rank_and_keeps_what_rank_0_said(tmp_path, status):
    before = {"status": status, "current_stage": "unlearn", "error": {"message": "stopped by a signal"}}
    (tmp_path / "results.json").write_text(json.dumps(before))
    line = job.record_rank_failure(tmp_path, RanksEnded(-signal.SIGKILL, 1, -signal.SIGKILL))
    assert line == f"rank 1 was killed by SIGKILL during stage `unlearn`; the other ranks were stopped (see {tmp_path})"
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed"
    assert record["error"] == {
        "message": line,
        "rank": 1,
        "stage": "unlearn",
        "signal": "SIGKILL",
        "then": {"message": "stopped by a signal"},
    }


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_a_record_rank_0_ended_on_its_own_is_left_as_is(tmp_path, status):
    before = {"status": status, "current_stage": "evaluate", "error": {"message": "rank 0's own error"}}
    (tmp_path / "results.json").write_text(json.dumps(before))
    job.record_rank_failure(tmp_path, RanksEnded(1, 0, 1))
    assert json.loads((tmp_path / "results.json").read_text()) == before
