"""The one builder (runner/components.py): a method's config error reaches the user unwrapped."""

from __future__ import annotations

import pytest

from runner import job
from runner.errors import ConfigError


def test_method_config_error_is_not_wrapped_by_hydra(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="method.variant"):
        job.run(tiny_cfg("method=task_vector", "method.variant=bogus"), tmp_path)
