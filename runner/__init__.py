"""unlearn-runner: a config-driven runner for LLM-unlearning experiments."""

__version__ = "0.1.0"
