"""What a job reads, and its content identity: part of the job key, computed before any expensive stage.

A benchmark, a method, a fine-tuning attack, an analysis and a model each declare their inputs (a
list of ``Input``: local files, or hub data sets); each job kind gathers those of its components
(``inputs(cfg)`` in runner/job_kinds.py), and ``identity(inputs)`` turns them into digests:

- a local file: the SHA-256 of its bytes (edit one line of a data file and the job key changes, so
  an identical-looking rerun recomputes instead of reusing the stale result). JSON Lines, text and
  parquet files are checked while they are read, so a malformed line stops the job here, before the
  model loads, with one message naming the file and line;
- a hub data set: its name and, where the config pins one, its revision (``unpinned`` otherwise: a
  new upload under the same name is not seen; pin a revision or use a local copy for that);
- a local model directory: the names, sizes and modification times of its files (hashing tens of GB
  of weights per job is too slow; a changed file changes its size or time);
- a GGUF model file: its SHA-256 (as the dequantised-model cache already does).

A benchmark without an ``inputs`` declaration (a new one) is covered by a scan of its config: every
value that names an existing file (hashed) or directory (listed as above).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from runner.data.files import open_data, parse_json_line, read_parquet, resolve_path
from runner.errors import ConfigError

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Input:
    """One thing a job reads. ``key``: the config key that names it (for messages)."""

    key: str
    path: Path | None = None  # a local file or directory
    hub: str | None = None  # or a hub data set, e.g. "cais/wmdp wmdp-bio test"
    revision: str | None = None
    format: str = "auto"  # auto (by suffix) | jsonl | text | parquet | bytes

    @classmethod
    def file(cls, key: str, path: str | Path, format: str = "auto") -> Input:
        return cls(key=key, path=Path(path).expanduser(), format=format)

    @classmethod
    def hub_data(cls, key: str, name: str, revision: str | None = None) -> Input:
        return cls(key=key, hub=name, revision=revision)


_memo: dict[tuple, str] = {}  # (path, size, mtime_ns, format) -> digest, within one process


def fingerprint(inp: Input) -> dict | str:
    if inp.hub is not None:
        return {"hub": inp.hub, "revision": inp.revision or "unpinned"}
    path = inp.path
    if path.is_dir():
        return _dir_fingerprint(path)
    if not path.is_file():
        return "missing"  # the benchmark's loader names what is missing and how to fetch it
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns, inp.format)
    if memo_key not in _memo:
        _memo[memo_key] = _file_digest(path, _format(inp), inp.key)
    return _memo[memo_key]


def _format(inp: Input) -> str:
    if inp.format != "auto":
        return inp.format
    return {".json": "jsonl", ".jsonl": "jsonl", ".parquet": "parquet", ".txt": "text", ".csv": "text"}.get(
        inp.path.suffix.lower(), "bytes"
    )


def _file_digest(path: Path, fmt: str, key: str) -> str:
    """SHA-256 of the file, checking each line (JSON Lines, text) or the whole file (parquet) on the way."""
    h = hashlib.sha256()
    with open_data(path, key) as f:
        if fmt in ("jsonl", "text"):
            for n, raw in enumerate(f, 1):
                h.update(raw)
                if fmt == "jsonl" and raw.strip():
                    parse_json_line(raw, path, n, key)
                elif fmt == "text":
                    try:
                        raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ConfigError(
                            key, f"{path} line {n} is not UTF-8 text", "repair or re-download the file"
                        ) from None
        else:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    if fmt == "parquet":
        read_parquet(path, key)  # a truncated or foreign file fails here, named
    return h.hexdigest()[:16]


def _dir_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            try:
                st = p.stat()
            except OSError:
                continue
            h.update(f"{p.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return "dir:" + h.hexdigest()[:16]


def _label(inp: Input) -> str:
    if inp.hub is not None:
        return f"hub:{inp.hub}"
    path = inp.path.resolve() if inp.path.exists() else inp.path
    try:
        return str(path.relative_to(PROJECT_ROOT))  # shipped data: the same key in every checkout
    except ValueError:
        return str(path)


# ---- who reads what: each job kind asks its components (runner/job_kinds.py) ---------------------------------


def declared_by(node, prefix: str, scan_fallback: bool = True) -> list[Input]:
    """The inputs the component ``node`` declares (its class's ``inputs(node)``), found through its ``_target_``.

    Without a declaration, a scan of its config (``scan_fallback``); without a ``_target_``, none."""
    if node is None or "_target_" not in node:
        return []
    try:
        cls = get_class(node._target_)
    except Exception:  # an unknown _target_ is reported where it is built, with its own message
        return []
    if hasattr(cls, "inputs"):
        return list(cls.inputs(node))
    return scan(node, prefix) if scan_fallback else []


def scan(node, prefix: str) -> list[Input]:
    """Inputs of a component that declares none: config values naming an existing file or directory."""
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    found = []

    def walk(value, key):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}")
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and value and not value.startswith("${"):
            try:
                path = resolve_path(value)
                if path.exists() and path.resolve() != Path("/"):
                    found.append(Input.file(key, path))
            except (OSError, ValueError):
                pass

    walk(plain, prefix)
    return found


def identity(read: list[Input]) -> dict:
    """{label: digest} of every input in ``read``; raises ConfigError on a malformed data file."""
    return {_label(inp): fingerprint(inp) for inp in read}
