"""``python -m runner`` reports bad input in one message and exits non-zero."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def _run(*overrides: str, tmp_path):
    cmd = [sys.executable, "-m", "runner", "experiment=tofu_smoke_tiny", f"hydra.run.dir={tmp_path}", *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_unknown_option_lists_the_choices(tmp_path):
    out = _run("method=npoo", tmp_path=tmp_path)
    assert out.returncode != 0
    assert "npoo" in out.stderr and "Available options" in out.stderr and "graddiff" in out.stderr


def test_mistyped_key_is_rejected(tmp_path):
    out = _run("unlearn.lr=1e-5", tmp_path=tmp_path)
    assert out.returncode != 0 and "unlearn.lr" in out.stderr


def test_non_positive_learning_rate_names_key_and_fix(tmp_path):
    out = _run("unlearn.learning_rate=0", f"paths.cache_dir={tmp_path / 'cache'}", tmp_path=tmp_path)
    assert out.returncode == 1
    assert "config key `unlearn.learning_rate`" in out.stderr and "Fix:" in out.stderr
    assert "Traceback" not in out.stderr
    record = json.loads((tmp_path / "results.json").read_text())  # a failed record, so a report shows the point
    assert record["status"] == "failed" and record["error"]["setting"] == "unlearn.learning_rate"
    assert record["metrics"] == {}
