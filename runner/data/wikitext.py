"""WikiText-2 paragraphs as text rows: the retain text of RMU's WMDP setting.

``source=local`` reads the validation split shipped in ``data/wikitext-2``
(the tokenised variant, ``<unk>`` and `` @-@ `` included, as shipped); ``hub``
or a directory read ``Salesforce/wikitext`` config ``wikitext-2-raw-v1``
(column ``text``), split ``test`` as in the RMU code. Headings (`` = Title = ``)
and lines of ``min_chars`` characters or fewer are dropped, as RMU does with
short lines.
"""

from __future__ import annotations

from pathlib import Path

from runner.data import hub
from runner.data.files import read_lines

HUB_SPLIT = hub.Split("Salesforce/wikitext", "wikitext-2-raw-v1", "test")
PROJECT_FILE = Path(__file__).resolve().parents[2] / "data" / "wikitext-2" / "valid.txt"


def load_paragraphs(source: str, min_chars: int = 50, key: str = "benchmark.wikitext.source") -> list[dict]:
    if source == "local":
        lines = read_lines(PROJECT_FILE, key)
    else:
        rows = hub.load_split(source, HUB_SPLIT, hub.TEXT, key, fetch_hint=" with scripts/fetch_data.py wmdp")
        lines = [r["text"] for r in rows]
    out = []
    for line in lines:
        text = line.strip()
        if len(text) > min_chars and not (text.startswith("=") and text.endswith("=")):
            out.append({"text": text})
    return out


def input_of(source: str, key: str = "benchmark.wikitext.source"):
    """The file ``load_paragraphs(source)`` reads, as a job input (runner/inputs.py)."""
    from runner.inputs import Input

    return Input.file(key, PROJECT_FILE, format="text") if source == "local" else hub.input_of(source, HUB_SPLIT, key)
