"""Content-addressed cache entries: a directory per key, trusted only once marked complete.

A job killed while writing leaves an entry without its ``COMPLETE`` marker;
the next job sees that, logs it, deletes the entry and rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
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
    """One cache directory ``<root>/<kind>/<key>``."""

    def __init__(self, root: str | Path, kind: str, key: str, what: str):
        self.path = Path(root) / kind / key
        self.what = what  # human name for the logs, e.g. "TOFU target model"

    def ready(self) -> bool:
        """True on a complete entry (logged as a hit); a partial one is removed so it gets rebuilt."""
        if (self.path / MARKER).is_file():
            log.info("cache hit: %s (%s)", self.what, self.path)
            return True
        if self.path.exists():
            log.warning("cache entry for %s is partial, rebuilding: %s", self.what, self.path)
            shutil.rmtree(self.path)
        else:
            log.info("cache miss: building %s", self.what)
        return False

    def start(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def finish(self, meta: dict | None = None) -> None:
        if meta is not None:
            write_json_atomic(self.path / "meta.json", meta)
        (self.path / MARKER).write_text("ok\n")


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
