"""Reading local data files so that a bad file stops the job with one message naming the file and line.

Every reader of a data file (JSON Lines, plain text, CSV, parquet) goes through here: a line that is
not UTF-8 or not JSON, or a parquet file that does not parse, becomes a ConfigError naming the config
key that points at the file, the file, the line and the fix, never a decode traceback.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from runner.errors import ConfigError

REPAIR = "repair or re-download the file (UTF-8 text, one JSON object per line)"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve_path(path: str | Path) -> Path:
    """``path`` as given (relative to the working directory), else relative to the project root if it exists there.

    So configs may name project files (``tests/fixtures/hub``) whatever directory the job runs in.
    """
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists() and (PROJECT_ROOT / p).exists():
        return PROJECT_ROOT / p
    return p


def _decode(raw: bytes, path: Path, line: int, key: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            key, f"{path} line {line} is not UTF-8 text (byte {exc.start}: {raw[exc.start : exc.start + 1]!r})", REPAIR
        ) from None


def parse_json_line(raw: bytes, path: Path, line: int, key: str):
    """One JSON Lines line (bytes, as read) as a value; ConfigError naming the file and line if it is not JSON."""
    text = _decode(raw, path, line, key)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            key, f"{path} line {line} is not valid JSON ({exc.msg}, column {exc.colno})", REPAIR
        ) from None


def read_jsonl(path: str | Path, key: str) -> list:
    """The values of a JSON Lines file (blank lines skipped)."""
    path = Path(path)
    with open_data(path, key) as f:
        return [parse_json_line(raw, path, n, key) for n, raw in enumerate(f, 1) if raw.strip()]


def read_lines(path: str | Path, key: str) -> list[str]:
    """The lines of a UTF-8 text file, without line ends."""
    path = Path(path)
    with open_data(path, key) as f:
        return [_decode(raw, path, n, key).rstrip("\r\n") for n, raw in enumerate(f, 1)]


def read_csv(path: str | Path, key: str) -> list[list[str]]:
    path = Path(path)
    with open_data(path, key) as f:
        text = "".join(_decode(raw, path, n, key) for n, raw in enumerate(f, 1))
    return list(csv.reader(io.StringIO(text, newline="")))


def read_parquet(path: str | Path, key: str) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(
            key, f"{path} is not a readable parquet file ({exc})", "re-download or re-export it"
        ) from None


def open_data(path: Path, key: str):
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller's `with` closes it
    except OSError as exc:
        raise ConfigError(
            key, f"cannot read {path} ({exc.strerror or exc})", "check the path and its permissions"
        ) from None
