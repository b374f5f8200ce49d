"""The one exception type a user should see: it names the config key and the fix."""

from __future__ import annotations

import errno


class ConfigError(ValueError):
    """Bad input. The message names the config key and says how to fix it."""

    def __init__(self, key: str, problem: str, fix: str):
        self.key = key
        super().__init__(f"config key `{key}`: {problem}. Fix: {fix}")


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN or infinite, the optimizer step overflowed, or the weights ran away."""

    def __init__(self, stage: str, step: int, value, what: str = "loss", fix: str = "", text: str | None = None):
        self.stage, self.step, self.value, self.what = stage, step, value, what
        fix = fix or "lower the learning rate or check the data"
        super().__init__(f"{stage}: {text or f'{what} is {value}'} at step {step}; {fix}")


class InvalidResult(RuntimeError):
    """A record about to say ``completed`` holds a metric that is not a finite number or an explained null."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            f"the result would record {problems[0]}{more}, so the job is not marked completed. Fix: run it again "
            "(a damaged cache entry is set aside and rebuilt); if it repeats, report it as a bug"
        )


class JobInterrupted(BaseException):
    """SIGTERM / SIGINT arrived; a BaseException so that broad `except Exception` blocks let it through."""


# errors of the machine rather than the program: one line and the fix, never a traceback
_ENVIRONMENT = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
_ENVIRONMENT_TEXT = {
    "No space left on device": errno.ENOSPC,
    "os error 28": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "Read-only file system": errno.EROFS,
    "os error 30": errno.EROFS,
}


def _machine_cause(exc: BaseException) -> tuple[int, BaseException] | None:
    """The first error in ``exc``'s chain of causes that the machine caused, with its errno."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = exc.errno if isinstance(exc, OSError) else None
        if code is None:
            code = next((c for text, c in _ENVIRONMENT_TEXT.items() if text in str(exc)), None)
        if code in _ENVIRONMENT:
            return code, exc
        exc = exc.__cause__ or exc.__context__
    return None


def environment_errno(exc: BaseException) -> int | None:
    """The errno of a machine-caused error anywhere in ``exc``'s causes (ENOSPC, EROFS, ...); None otherwise."""
    found = _machine_cause(exc)
    return found[0] if found else None


def environment_problem(exc: BaseException) -> str | None:
    """One line for an error caused by the machine (full or read-only disk, permissions); None for any other.

    Looks through the exception's causes, and at the message of libraries that do not raise OSError
    (safetensors reports a full disk as ``SafetensorError: ... No space left on device (os error 28)``).
    """
    found = _machine_cause(exc)
    if found is None:
        return None
    code, cause = found
    where = getattr(cause, "filename", None)
    detail = f" ({where})" if where else f" ({str(cause).splitlines()[0][:200]})" if str(cause) else ""
    return (
        f"{_ENVIRONMENT[code]}{detail}. Fix: make room or fix the permissions there, or point "
        "paths.cache_dir / hydra.run.dir at another file system"
    )
