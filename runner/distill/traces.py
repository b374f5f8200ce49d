"""Reasoning traces to distil: (problem, chain of thought, final answer), from a shipped file, the hub or a directory.

A ``traces`` config (``conf/traces/*.yaml``) maps the data set's columns, and says how its
trace column is laid out (``layout``):

- ``think``: ``<think>`` thinking ``</think>`` then the solution. The thinking is the chain of
  thought, and the solution after the closing tag is the final answer (OpenR1-Math's
  generations). A trace without the closing tag is treated as all thinking.
- ``steps``: one step per line, and the last line is the final answer (GSM8K:
  ``#### 72``). Calculator annotations such as ``<<48/2=24>>`` are removed (``strip``).
- ``text``: the whole column is the chain of thought (LIMO's solutions, s1K's thinking
  trajectories). The final answer is another column, kept as it is (``final``), or the bare
  answer in ``answer_template`` (``answer``).

A column that holds a list (OpenR1's ``generations``) gives its first entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.data import hub
from runner.data.reasoning import PROJECT_DATA, answer_text, splits
from runner.errors import ConfigError
from runner.options import Range, check_number

LAYOUTS = ("think", "steps", "text")
FETCH_HINT = " with scripts/fetch_data.py"


@dataclass
class Trace:
    question: str
    thinking: str  # the chain of thought, to be split into thoughts and condensed
    final: str  # the final answer, always kept


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return answer_text(value) if isinstance(value, (int, float)) else str(value or "")


def _column_check(v) -> str | None:
    return (
        None if isinstance(v, (str, int, float, list, tuple)) and not isinstance(v, bool) else "text or a list of text"
    )


def split_trace(raw: str, cfg, row: dict, key: str = "traces") -> tuple[str, str]:
    """(thinking, final answer) of one trace under the config's layout (``key``: where the config sits)."""
    layout = str(cfg.layout)
    if cfg.get("strip"):
        raw = re.sub(str(cfg.strip), "", raw)
    if layout == "think":
        open_tag, close_tag = str(cfg.think_tags[0]), str(cfg.think_tags[1])
        body = raw.split(open_tag, 1)[1] if open_tag in raw else raw
        thinking, _, after = body.partition(close_tag)
        final = after.strip() or _final_column(cfg, row, key)
        return thinking.strip(), final
    if layout == "steps":
        lines = [line for line in raw.strip().splitlines() if line.strip()]
        marker = cfg.get("answer_marker")
        if marker and lines and lines[-1].lstrip().startswith(str(marker)):
            return "\n".join(lines[:-1]), lines[-1].strip()
        return "\n".join(lines), _final_column(cfg, row, key)
    return raw.strip(), _final_column(cfg, row, key)


def _final_column(cfg, row: dict, key: str) -> str:
    if cfg.get("final"):
        return _text(row[str(cfg.final)]).strip()
    if cfg.get("answer"):
        return str(cfg.answer_template).format(answer=_text(row[str(cfg.answer)]))
    raise ConfigError(
        f"{key}.final",
        f"the `{cfg.layout}` layout found no final answer in the trace and no answer column is named",
        f"set {key}.final (a column kept verbatim) or {key}.answer (a bare answer column)",
    )


def inputs(cfg, key: str = "traces") -> list:
    """The files (or hub splits) the traces come from: their content is part of the job key (runner/inputs.py).

    ``key`` is where the traces config sits (``traces`` in a distillation job, ``method.cot`` in R²MU's).
    """
    from runner.inputs import Input

    if str(cfg.source) == "local":
        return [Input.file(f"{key}.local", PROJECT_DATA / str(cfg.local))] if cfg.get("local") else []
    return [hub.input_of(str(cfg.source), s, f"{key}.source") for s in splits(cfg)]


def load_traces(cfg, key: str = "traces") -> list[Trace]:
    """The configured traces, the first ``subset`` of them (all when null), schema-checked (``key``: as ``inputs``)."""
    if str(cfg.layout) not in LAYOUTS:
        raise ConfigError(f"{key}.layout", f"`{cfg.layout}` is not a layout", f"use one of {', '.join(LAYOUTS)}")
    columns = [cfg.question, cfg.trace, cfg.get("final"), cfg.get("answer")]
    schema = {str(c): _column_check for c in columns if c}
    source = str(cfg.source)
    if source == "local":
        if not cfg.get("local"):
            raise ConfigError(f"{key}.source", f"no copy of {cfg.name} ships with the project", "use source=hub")
        rows = hub.load_file(PROJECT_DATA / str(cfg.local), schema, f"shipped {cfg.local}", f"{key}.source")
    else:
        rows = []
        for split in splits(cfg):
            rows += hub.load_split(source, split, schema, f"{key}.source", fetch_hint=FETCH_HINT)
    n = cfg.get("subset")
    check_number(f"{key}.subset", n, Range(low=1, whole=True, optional=True, example="64"))
    out = []
    for row in rows[:n] if n else rows:
        thinking, final = split_trace(_text(row[str(cfg.trace)]), cfg, row, key)
        out.append(Trace(_text(row[str(cfg.question)]).strip(), thinking, final))
    return out
