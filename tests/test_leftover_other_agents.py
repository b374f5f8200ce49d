"""Temporary home of tests whose subject (coreset, trackers) other work owns; emptied when merging."""

from __future__ import annotations

import pytest

from runner import job
from runner.errors import ConfigError
from tests.conftest import compose_cfg


def test_tracker_run_name_of_an_evaluation_only_job():
    from omegaconf import OmegaConf

    from runner import tracking

    config = OmegaConf.to_container(
        compose_cfg("method=none", "benchmark=math500", "decoding=cyclicreflex", "model=tiny", "seed=3"), resolve=True
    )
    assert tracking.run_name(config, {}) == "none-math500-tiny-cyclicreflex-s3"
    assert tracking.run_name(config, {"method": "none", "benchmark": "math500"}).startswith("none-math500-tiny")


def test_coreset_ratio_without_a_selector_is_rejected(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="coreset.ratio"):
        job.run(tiny_cfg("coreset.ratio=0.05"), tmp_path)
