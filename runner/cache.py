"""Content-addressed cache entries: a directory per key, trusted only once marked complete.

Parallel jobs (a sweep's Slurm jobs, the ranks of one job) share the cache, so
an entry is never written in place: ``start`` hands out a private temporary
directory next to it, ``finish`` marks that complete and renames it into place
(atomic on one file system). A reader therefore sees a complete entry or none.
A per-entry file lock, held from ``start`` to ``finish``, orders the writers:
while one writes, another that wants the same entry waits and then finds it
complete. Left-overs of a killed writer (a temporary directory, or a partial
entry from before this scheme) are deleted only while holding the lock, so a
directory another live process is still writing is never removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
MARKER = "COMPLETE"


def content_key(obj) -> str:
    """Stable short hash of any JSON-serialisable object (dict keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class CacheEntry:
    """One cache directory ``<root>/<kind>/<key>``, built in ``<root>/<kind>/.<key>.tmp-*`` and renamed into place."""

    def __init__(self, root: str | Path, kind: str, key: str, what: str):
        self.path = Path(root) / kind / key
        self.what = what  # human name for the logs, e.g. "TOFU target model"
        self._lock_path = self.path.parent / f".{key}.lock"
        self._lock_fd: int | None = None
        self._building: Path | None = None

    def complete(self) -> bool:
        return (self.path / MARKER).is_file()

    def ready(self) -> bool:
        """True on a complete entry (logged as a hit). On a miss, waits for a writer of this entry that is
        still at work (then it is a hit after all) and removes a partial entry left by a dead one."""
        if self.complete():
            log.info("cache hit: %s (%s)", self.what, self.path)
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            if self.complete():  # a concurrent writer finished while we waited for the lock
                log.info("cache hit: %s, written by another process (%s)", self.what, self.path)
                return True
            if self.path.exists():
                log.warning("cache entry for %s is partial, rebuilding: %s", self.what, self.path)
                shutil.rmtree(self.path)
            else:
                log.info("cache miss: building %s", self.what)
        return False

    def start(self) -> Path:
        """A fresh private directory to write the entry into; holds the entry's lock until ``finish``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._acquire()
        for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):  # a killed writer's (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tag = f"{socket.gethostname()}-{os.getpid()}"
        self._building = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.tmp-{tag}-"))
        return self._building

    def finish(self, meta: dict | None = None) -> None:
        """Mark the directory from ``start`` complete and move it into place; releases the lock."""
        building, self._building = self._building, None
        if building is None:
            raise RuntimeError(f"CacheEntry.finish without start for {self.path}")
        try:
            if meta is not None:
                write_json_atomic(building / "meta.json", meta)
            (building / MARKER).write_text("ok\n")
            if self.complete():  # an identical entry landed meanwhile (same key): keep it, drop ours
                shutil.rmtree(building)
            else:
                if self.path.exists():  # partial, from a writer that died before this scheme
                    shutil.rmtree(self.path)
                os.replace(building, self.path)
                _fsync_dir(self.path.parent)
        finally:
            self._release()

    def __del__(self):  # a build abandoned by an exception must not keep the lock
        self._release()

    # -- the lock: fcntl.flock on a file beside the entry; the kernel drops it if the process dies --

    def _acquire(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process writing %s (%s)", self.what, self.path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd

    def _release(self) -> None:
        fd, self._lock_fd = getattr(self, "_lock_fd", None), None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self):
        owned = self._lock_fd is None
        self._acquire()
        try:
            yield
        finally:
            if owned:
                self._release()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str | Path, obj) -> None:
    """Write JSON to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(o)
