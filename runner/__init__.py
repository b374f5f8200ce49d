"""unlearn-runner: a config-driven runner for LLM-unlearning experiments."""

__version__ = "0.1.0"

from runner.rundir import register_resolvers as _register_resolvers  # noqa: E402

_register_resolvers()  # ${runner.uid:} in conf/config.yaml: before Hydra composes any config
