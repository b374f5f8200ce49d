"""Maths problems for the reasoning benchmarks: the shipped copies, the hub, or a local hub layout.

A benchmark config's ``data`` block names the hub splits (concatenated in order), the
question and answer columns, and the shipped copy under ``data/`` if there is one
(MATH-500 and GSM8K ship; the AIME / AMC sets come from the hub or a directory laid out
``<dir>/<hub repo id>/<config>/<split>.parquet|jsonl``, see scripts/fetch_data.py).
Rows come back as ``{"question": str, "answer": str}``; a numeric answer column (AMC23
stores floats) becomes its shortest exact string (27.0 -> "27").
"""

from __future__ import annotations

from runner.data import hub
from runner.data.files import PROJECT_ROOT
from runner.errors import ConfigError

PROJECT_DATA = PROJECT_ROOT / "data"
FETCH_HINT = " with scripts/fetch_data.py reasoning"


def is_answer(v) -> str | None:
    ok = isinstance(v, (str, int, float)) and not isinstance(v, bool)
    return None if ok else "a string or a number"


def answer_text(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def splits(data_cfg) -> list[hub.Split]:
    return [hub.Split(str(s.repo), str(s.config), str(s.split)) for s in data_cfg.splits]


def load_problems(data_cfg, source: str, key: str = "benchmark.source") -> list[dict]:
    """``{"question", "answer"}`` rows of every split in ``data_cfg.splits``, schema-checked."""
    schema = {str(data_cfg.question): hub.STRING, str(data_cfg.answer): is_answer}
    if source == "local":
        local = data_cfg.get("local")
        if not local:
            raise ConfigError(
                key,
                f"no copy of {', '.join(str(s) for s in splits(data_cfg))} ships with the project",
                "use source=hub, or a directory laid out <dir>/<repo id>/<config>/<split>.parquet|jsonl "
                "(python scripts/fetch_data.py reasoning --out DIR)",
            )
        rows = hub.load_file(PROJECT_DATA / str(local), schema, f"shipped {local}", key)
    else:
        rows = []
        for split in splits(data_cfg):
            rows += hub.load_split(source, split, schema, key, fetch_hint=FETCH_HINT)
    q, a = str(data_cfg.question), str(data_cfg.answer)
    return [{"question": r[q], "answer": answer_text(r[a])} for r in rows]
