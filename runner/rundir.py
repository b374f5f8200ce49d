"""Run directories: a unique name per job, checked writable before Hydra writes there, one live job each.

- ``${runner.uid:}`` (registered on import of ``runner``) is a short random suffix; conf/config.yaml
  names run and sweep directories by the time to the microsecond plus this suffix, so jobs started
  in the same second (or microsecond) never share a directory.
- ``${runner.dirname:...}`` names a sweep point's directory after its overrides, config-group choices
  first (``method=npo,seed=0,unlearn.learning_rate=1e-05``). A value holding a path is left out (it
  would nest directories and crowd out the choices): a hash of the paths stands for them, so points
  that differ only in a path still differ. A name over 200 bytes keeps its first 200 and a hash of
  the whole, within the file system's 255-byte limit.
- ``CheckRunDir`` is a Hydra callback: before Hydra creates the run (or sweep) directory and opens
  its log file there, it checks that the directory can be created and written, and stops with one
  message naming ``hydra.run.dir`` (or ``hydra.sweep.dir``) otherwise.
- ``hold`` takes a lock on the run directory for the job's lifetime, so two live jobs given the
  same directory (an explicit ``hydra.run.dir``) cannot overwrite each other's record; ``claim`` then
  refuses a directory holding the record of another job (another job key) unless ``+overwrite=true``.
  Hydra's own ``.hydra/*.yaml`` writing is off (``hydra.output_subdir: null``): ``save_hydra_files``
  writes them, redacted, only once the lock is held and the directory claimed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import sys
import tempfile
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from runner.errors import ConfigError

log = logging.getLogger(__name__)

LOCK_NAME = ".runner.lock"
HYDRA_DIR = ".hydra"


MAX_NAME = 200  # bytes of a directory name kept readable; file systems refuse names over 255


def unique_suffix() -> str:
    return secrets.token_hex(3)


def short_dirname(name: str) -> str:
    """A sweep point's directory name from Hydra's ``override_dirname`` (module docstring): choices first,
    paths as a hash, cut to ``MAX_NAME`` bytes with a hash of the whole (distinct names stay distinct);
    the value of a credential-named override (``+db.password=...``) never becomes part of a directory name."""
    from runner.output.secrets import is_secret_name

    items = []
    for item in _overrides(name):
        key, sep, _ = item.partition("=")
        items.append(f"{key}=redacted" if sep and is_secret_name(key.lstrip("+~")) else item)
    paths = [i for i in items if _is_path(i.partition("=")[2])]
    kept = sorted((i for i in items if i not in paths), key=lambda i: "." in i.partition("=")[0])  # stable
    if paths:
        kept.append("paths-" + hashlib.sha256(",".join(paths).encode()).hexdigest()[:8])
    text = ",".join(kept)
    if len(text.encode()) <= MAX_NAME:
        return text
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{text.encode()[:MAX_NAME].decode(errors='ignore')}...{digest}"


def _overrides(name: str) -> list[str]:
    """``a=1,b=[x,y],c=2`` -> its overrides: commas inside brackets, braces or quotes belong to a value."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(name):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            items.append(name[start:i])
            start = i + 1
    items.append(name[start:])
    return [i for i in items if i]


def _is_path(value: str) -> bool:
    # a separator would nest the point's directory; a home or relative prefix is a path too
    return "/" in value or "\\" in value or value.startswith("~")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("runner.uid"):
        # cached: every reading of one config (run dir, sweep dir, the saved hydra.yaml) sees one value
        OmegaConf.register_new_resolver("runner.uid", unique_suffix, use_cache=True)
    if not OmegaConf.has_resolver("runner.dirname"):
        OmegaConf.register_new_resolver("runner.dirname", short_dirname)


def check_writable(path: Path, key: str) -> None:
    """Create ``path`` if needed and write a probe file in it; ConfigError naming ``key`` if either fails."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:
            probe.write(b"probe\n" * 512)  # a few KiB: a full file system refuses it
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise ConfigError(
            key,
            f"cannot write to {path} ({exc.strerror or exc})",
            f"point {key} at a writable directory with free space (or make room on that file system)",
        ) from None


class CheckRunDir(Callback):
    """Hydra callback (conf/config.yaml ``hydra.callbacks``): the output directory is writable, checked first."""

    def on_run_start(self, config, **kwargs) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config, **kwargs) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(value, key: str) -> None:
        try:
            check_writable(Path(str(value)).expanduser(), key)
        except ConfigError as exc:
            # Hydra turns a callback's exception into a warning and goes on: stop here, one line
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)


@contextlib.contextmanager
def hold(run_dir: Path):
    """Lock ``run_dir`` for this job; a ConfigError when another live job holds it (the kernel drops a dead one's)."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                "hydra.run.dir",
                f"{run_dir} is in use by another running job",
                "give each job its own directory (leave hydra.run.dir unset: the default is unique per job)",
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def other_job(run_dir: Path, keys: set[str]) -> dict | None:
    """The record in ``run_dir`` when it belongs to another job (its job key is none of ``keys``), else None."""
    from runner.cache_schema import read_json

    existing, _ = read_json(Path(run_dir) / "results.json")
    if not isinstance(existing, dict) or "job_key" not in existing:
        return None  # no record (or not one a job wrote): nothing to lose
    if existing.get("job_key") in keys or existing.get("config_key") in keys:
        return None
    return existing


def claim(run_dir: Path, keys: set[str], overwrite: bool) -> None:
    """Refuse ``run_dir`` when it holds another job's record, unless the user asked to replace it."""
    existing = other_job(run_dir, keys)
    if existing is None:
        return
    if overwrite:
        log.warning("replacing the record of another job in %s (+overwrite=true)", run_dir)
        return
    raise ConfigError(
        "hydra.run.dir",
        f"{run_dir} holds the record of another job (job key {existing.get('job_key')}, "
        f"status {existing.get('status')})",
        "leave hydra.run.dir unset (each job gets its own directory), or add +overwrite=true to replace that record",
    )


def save_hydra_files(run_dir: Path, task_cfg, hidden: list[str]) -> None:
    """Hydra's ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` (what Hydra itself writes before the
    job can lock its directory), written with credential values redacted; nothing outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    from runner.output.secrets import scrub_files

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    out = Path(run_dir) / HYDRA_DIR
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "config.yaml": task_cfg,
        "hydra.yaml": OmegaConf.create({"hydra": hydra_cfg}),
        "overrides.yaml": hydra_cfg.overrides.task,
    }
    for name, node in files.items():
        OmegaConf.save(node, out / name, resolve=False)
    scrub_files(sorted(out.glob("*.yaml")), hidden)
