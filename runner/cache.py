"""Content-addressed cache entries: a directory per key, trusted only once marked complete.

Parallel jobs (a sweep's Slurm jobs, the ranks of one job) share the cache, so
an entry is never written in place: ``start`` hands out a private temporary
directory next to it, ``finish`` marks that complete and renames it into place
(atomic on one file system). A reader therefore sees a complete entry or none.
A per-entry file lock orders the writers: taken when ``ready`` finds no entry and
held through the build to ``finish``, so of two jobs that want the same entry one
builds it while the other waits and then finds it complete (one fine-tuning, not two).
Left-overs of a killed writer (a temporary directory, or a partial entry from before
this scheme) are deleted only while holding the lock, so a directory another live
process is still writing is never removed; ``clean_stale`` removes every such
left-over of the cache at the start of a job.

The COMPLETE marker holds each file's size and SHA-256. ``ready`` checks them (sizes
always; checksums of files up to ``VERIFY_BYTES``; the header of every safetensors
file), so a truncated or corrupted entry is logged with its path, moved aside to
``<kind>/.<key>.corrupt-<time>`` and rebuilt instead of failing every later job.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import weakref
from pathlib import Path

from runner.cache_schema import MARKER as MARKER_SCHEMA
from runner.cache_schema import schema_problem

log = logging.getLogger(__name__)
MARKER = "COMPLETE"
VERIFY_BYTES = 256 << 20  # files up to this size are checksummed on every read; larger ones by size and header
# the entry object holding each entry's lock, per thread: a build abandoned by an exception in this thread
# leaves its lock to the next entry of the same key here instead of deadlocking against itself
_held: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def content_key(obj) -> str:
    """Stable short hash of any JSON-serialisable object (dict keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: Path, full: bool = False) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest() if full else h.hexdigest()[:16]


class CacheEntry:
    """One cache directory ``<root>/<kind>/<key>``, built in ``<root>/<kind>/.<key>.tmp-*`` and renamed into place."""

    def __init__(self, root: str | Path, kind: str, key: str, what: str, check=None):
        self.path = Path(root) / kind / key
        self.what = what  # human name for the logs, e.g. "TOFU target model"
        # check(entry directory) -> None or what is wrong with its content (runner/cache_schema.py): an entry
        # whose checksums agree can still hold what other inputs built, or a file an older version wrote
        self.check = check
        self._lock_path = self.path.parent / f".{key}.lock"
        self._lock_fd: int | None = None
        self._building: Path | None = None
        self._problem: str | None = None

    def complete(self) -> bool:
        return (self.path / MARKER).is_file()

    def ready(self) -> bool:
        """True on a complete, intact entry (logged as a hit). On a miss, waits for a writer of this entry that is
        still at work (then it is a hit after all), removes a partial entry left by a dead one, moves a corrupt one
        aside, and returns False holding the entry's lock: the caller builds it (``start``, ``finish``) while other
        processes wanting it wait."""
        if self.complete() and self._intact():
            log.info("cache hit: %s (%s)", self.what, self.path)
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._acquire()
        try:
            if self.complete() and self._intact():  # a concurrent writer finished while we waited for the lock
                log.info("cache hit: %s, written by another process (%s)", self.what, self.path)
                self._release()
                return True
            if self.complete():
                self.set_aside(self._problem or "corrupt")
            elif self.path.exists():
                log.warning("cache entry for %s is partial, rebuilding: %s", self.what, self.path)
                shutil.rmtree(self.path)
            else:
                log.info("cache miss: building %s", self.what)
        except BaseException:
            self._release()
            raise
        return False

    def _intact(self) -> bool:
        self._problem = verify(self.path)
        if self._problem is None and self.check is not None:
            self._problem = self.check(self.path)
        return self._problem is None

    def set_aside(self, problem: str) -> Path:
        """Move a corrupt entry out of the way (kept for inspection), so it is rebuilt; returns where it went."""
        aside = self.path.parent / f".{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        os.replace(self.path, aside)
        log.warning(
            "cache entry for %s is corrupt (%s): %s moved aside to %s; rebuilding", self.what, problem, self.path, aside
        )
        return aside

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
        """Mark the directory from ``start`` complete (with each file's size and checksum) and move it into place;
        releases the lock."""
        building, self._building = self._building, None
        if building is None:
            raise RuntimeError(f"CacheEntry.finish without start for {self.path}")
        try:
            if meta is not None:
                write_json_atomic(building / "meta.json", meta)
            write_json_atomic(building / MARKER, {"files": manifest(building)})
            if self.complete():  # an identical entry landed meanwhile (same key): keep it, drop ours
                shutil.rmtree(building)
            else:
                if self.path.exists():  # partial, from a writer that died before this scheme
                    shutil.rmtree(self.path)
                os.replace(building, self.path)
                _fsync_dir(self.path.parent)
        finally:
            self._release()

    def abandon(self) -> None:
        """A build that failed: drop its temporary directory and release the lock."""
        building, self._building = self._building, None
        if building is not None:
            shutil.rmtree(building, ignore_errors=True)
        self._release()

    def __del__(self):  # a build abandoned by an exception must not keep the lock
        self._release()

    # -- the lock: fcntl.flock on a file beside the entry; the kernel drops it if the process dies --

    def _acquire(self) -> None:
        if self._lock_fd is not None:
            return
        owner_key = (str(self._lock_path), threading.get_ident())
        owner = _held.get(owner_key)
        if owner is not None and owner is not self and owner._lock_fd is not None:
            self._lock_fd, owner._lock_fd = owner._lock_fd, None  # this thread holds it already: take it over
            _held[owner_key] = self
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process building %s (%s)", self.what, self.path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd
        _held[owner_key] = self

    def _release(self) -> None:
        fd, self._lock_fd = getattr(self, "_lock_fd", None), None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def manifest(directory: Path) -> dict:
    """{relative path: [size, sha256]} of every file under ``directory`` (the marker excluded)."""
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MARKER):
        files[str(path.relative_to(directory))] = [path.stat().st_size, file_digest(path, full=True)]
    return files


def verify(directory: Path) -> str | None:
    """None when the complete entry ``directory`` is intact, else what is wrong (for the log)."""
    try:
        text = (directory / MARKER).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return f"unreadable marker: {exc}"
    if text.strip() == "ok":
        files = None  # an entry from before checksums; its safetensors headers (and the entry's check) still run
    else:
        try:
            marker = json.loads(text)
        except json.JSONDecodeError:
            return "unreadable marker"
        problem = schema_problem(marker, MARKER_SCHEMA)
        if problem:
            return f"malformed marker: {problem}"
        files = marker["files"]
    checked = set()
    for name, (size, digest) in (files or {}).items():
        path = directory / name
        try:
            actual = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if actual != size:
            return f"{name} has {actual} bytes, {size} were written"
        if size <= VERIFY_BYTES:
            if file_digest(path, full=True) != digest:
                return f"{name} does not match its checksum"
            checked.add(name)
    for path in directory.glob("*.safetensors"):  # not checksummed (too large, or an entry from before checksums)
        if path.name in checked:
            continue
        problem = safetensors_problem(path)
        if problem:
            return f"{path.name}: {problem}"
    return None


def safetensors_problem(path: Path) -> str | None:
    """A load attempt of the header and index: a truncated file's tensors run past its end."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception as exc:  # SafetensorError, OSError: any reason it would not load
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def clean_stale(root: str | Path) -> None:
    """Remove the temporary directories of killed builds anywhere in the cache (each only when its entry's lock
    is free: no live writer). A read-only or missing cache is left alone."""
    root = Path(root)
    for tmp in sorted(root.glob("*/.*.tmp-*")):
        key = tmp.name[1:].split(".tmp-", 1)[0]
        lock = tmp.parent / f".{key}.lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return  # read-only cache
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # being built right now
        try:
            log.info("removing the left-over of a killed build: %s", tmp)
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


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
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a write or fsync on a full disk names no file: say which one could not be written
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
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
