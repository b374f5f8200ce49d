"""The one exception type a user should see: it names the config key and the fix."""


class ConfigError(ValueError):
    """Bad input. The message names the config key and says how to fix it."""

    def __init__(self, key: str, problem: str, fix: str):
        self.key = key
        super().__init__(f"config key `{key}`: {problem}. Fix: {fix}")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""

    def __init__(self, stage: str, step: int, value: float):
        self.stage, self.step, self.value = stage, step, value
        super().__init__(f"{stage}: loss is {value} at step {step}; lower the learning rate or check the data")


class JobInterrupted(BaseException):
    """SIGTERM / SIGINT arrived; a BaseException so that broad `except Exception` blocks let it through."""
