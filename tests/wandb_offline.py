"""Read an offline W&B run back, for the tests that check what a tracker sent.

wandb ships no Python reader for its ``run-<id>.wandb`` transaction log, so this reads the
format directly: a 7-byte file header, then LevelDB-log records (7-byte header: crc32,
little-endian length, type FULL/FIRST/MIDDLE/LAST) in 32 KiB blocks, each a ``Record`` protobuf.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path


def read_offline_run(path: str | Path) -> dict:
    """The run name, group, tags, config, history, summary, and exit code stored in an offline W&B run directory."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file under {path}")
    out: dict = {"config": {}, "summary": {}, "history": [], "name": None, "group": None, "project": None}
    for payload in _leveldb_records(files[0].read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(name=run.display_name, group=run.run_group, project=run.project, tags=list(run.tags))
            _apply_updates(out["config"], run.config.update)
        elif kind == "config":
            _apply_updates(out["config"], record.config.update)
        elif kind == "summary":
            _apply_updates(out["summary"], record.summary.update)
        elif kind == "history":
            step = {}
            _apply_updates(step, record.history.item)
            out["history"].append(step)
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def _apply_updates(target: dict, items) -> None:
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)  # nested: a logged dict (a Table's metadata)
        node = target
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json)


def _leveldb_records(data: bytes, block: int = 32768, header: int = 7):
    pos, pending = header, b""  # the file begins with ":W&B", a 2-byte magic and a version byte
    while pos + header <= len(data):
        if block - pos % block < header:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        payload = data[pos + header : pos + header + length]
        pos += header + length
        if kind == 1:  # FULL
            yield payload
        elif kind == 2:  # FIRST
            pending = payload
        elif kind == 3:  # MIDDLE
            pending += payload
        elif kind == 4:  # LAST
            yield pending + payload
