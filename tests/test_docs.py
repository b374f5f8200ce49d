"""The documentation site's generated reference pages: current, and built from what the code really writes."""

from __future__ import annotations

import re
import sys

from runner.output.record import FIELDS
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import gen_docs  # noqa: E402
from yaml_comments import read_comments  # noqa: E402


def test_committed_reference_pages_are_current():
    stale = gen_docs.stale()
    assert not stale, f"{[str(p) for p in stale]} differ from the code: run `make docs` and commit them"


def test_a_changed_option_makes_its_page_stale(tmp_path):
    for path, text in gen_docs.pages().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert gen_docs.stale(tmp_path) == []
    page = tmp_path / gen_docs.REFERENCE / "config.md"
    page.write_text(page.read_text().replace("| `beta` | `0.1` |", "| `beta` | `0.2` |", 1))
    assert gen_docs.stale(tmp_path) == [gen_docs.REFERENCE / "config.md"]


def test_comment_reader_on_a_small_file():
    text = "\n".join(
        [
            "# @package _global_",
            "# What the file is",
            "# for.",
            "defaults:",
            "  - /traces@cot: gsm8k   # a list item's comment is not a key's",
            "  - _self_",
            "top: 1   # inline",
            "# above a mapping",
            "outer:",
            "  # above a nested key",
            "  inner: 'a # b'   # after a quoted hash",
            "  plain: x",
            "",
            "last: [1, 2]",
        ]
    )
    header, comments = read_comments(text)
    assert header == ["What the file is", "for."]
    assert comments == {
        "top": "inline",
        "outer": "above a mapping",
        "outer.inner": "above a nested key after a quoted hash",
    }


def test_option_table_shows_defaults_and_comments():
    lines = gen_docs._option_section(ROOT / "conf" / "method" / "npo.yaml", "### npo")
    assert "| `alpha` | `1.0` | weight of the retain NLL |" in lines
    assert "| `_target_` | `runner.methods.npo.NPO` |  |" in lines


def test_every_field_the_code_writes_is_listed():
    """Each `record.data["..."] =` in runner/, and each analysis' own key (record.data[self.name]), is in FIELDS."""
    written = set()
    for path in (ROOT / "runner").rglob("*.py"):
        written |= set(re.findall(r'record\.data\["(\w+)"\]\s*=', path.read_text()))
    for path in (ROOT / "runner" / "analysis").glob("*.py"):
        if path.name != "base.py":
            written |= set(re.findall(r'^    name = "(\w+)"', path.read_text(), re.M))
    assert {"metrics", "launch", "diffusion", "distill", "connectivity", "trace"} <= written  # the scan sees them
    assert written <= set(FIELDS), written - set(FIELDS)
