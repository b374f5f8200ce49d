"""Starting the job's tracker: ``logger: null`` and other ranks get the null tracker; a node builds its class."""

from __future__ import annotations

import pytest

from runner.errors import ConfigError
from runner.output import tracking
from runner.output.trackers.base import NullTracker, Tracker
from runner.output.trackers.tensorboard import TensorBoardTracker
from tests.conftest import compose_cfg

CONFIG = {"seed": 0, "service": {"api_key": "PlantedConfigSecret-91827364"}}


def test_logger_none_and_its_spellings_are_null():
    assert compose_cfg().logger is None  # the default
    assert compose_cfg("logger=none").logger is None
    assert "logger" not in compose_cfg("~logger")  # no logger node at all: the job reads cfg.get("logger")
    assert compose_cfg("logger=tensorboard").logger._target_ == "runner.output.trackers.tensorboard.TensorBoardTracker"


@pytest.mark.parametrize("node", [None, compose_cfg("logger=none").logger])
def test_logger_none_starts_nothing(node, tmp_path):
    tracker = tracking.start(node, tmp_path, CONFIG, {"method": "npo"})
    assert type(tracker) is NullTracker and tracker.callbacks == []
    tracker.finish({"status": "completed", "metrics": {"unlearned": {"forget_prob": 0.5}}})
    assert list(tmp_path.iterdir()) == []


def test_only_the_main_process_tracks(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert type(tracking.start(compose_cfg("logger=wandb").logger, tmp_path, CONFIG)) is NullTracker
    assert not (tmp_path / "wandb").exists()


def test_a_logger_node_builds_its_tracker_with_the_runtime_arguments(tmp_path):
    node = compose_cfg("logger=tensorboard", "logger.subdir=tb").logger
    tracker = tracking.start(node, tmp_path, CONFIG, {"method": "npo"})
    try:
        assert isinstance(tracker, TensorBoardTracker) and isinstance(tracker, Tracker)
        assert tracker.dir == tmp_path / "tb" and tracker.hidden == ["PlantedConfigSecret-91827364"]
    finally:
        tracker.close(True)


def test_bad_logger_nodes_name_the_key():
    with pytest.raises(ConfigError, match="logger._target_.*is not a Tracker"):
        tracking.start({"_target_": "runner.output.record.RunRecord"}, ".", CONFIG)
    with pytest.raises(ConfigError, match="logger.*unexpected keyword argument 'colour'"):
        tracking.start({"_target_": "runner.output.trackers.tensorboard.TensorBoardTracker", "colour": 1}, ".", CONFIG)
