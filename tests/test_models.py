"""Model loading (runner/models.py): a hub model without network points at the offline default."""

from __future__ import annotations

import pytest

from runner import job
from runner.errors import ConfigError


def test_hub_model_without_network_points_to_offline_default(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import: without this it retries the lookup 5 times with
    # back-off (~45 s) before failing as offline
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    cfg = tiny_cfg("model=phi-1.5", f"paths.cache_dir={tmp_path / 'cache'}")
    with pytest.raises(ConfigError) as err:
        job.run(cfg, tmp_path)
    assert "`model.id`" in str(err.value) and "model=smollm2-135m benchmark.source=local" in str(err.value)
