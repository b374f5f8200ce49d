"""The comments of a Hydra YAML file, by dotted key: what each option of conf/ says about itself.

PyYAML drops comments, so this reads them line by line beside it: a file's header (the comment lines
before its first key), and for each key the comment lines right above it plus its end-of-line comment.
conf/ uses plain block mappings (no block scalars, no flow mappings across lines), which is all this reads.
"""

from __future__ import annotations

import re

KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_@.\-/]+):(?:\s+(?P<rest>.*))?$")


def _split_comment(text: str) -> tuple[str, str]:
    """``value  # comment`` -> (value, comment); a ``#`` inside quotes is part of the value."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip(), text[i + 1 :].strip()
    return text.rstrip(), ""


def read_comments(text: str) -> tuple[list[str], dict[str, str]]:
    """(header lines, {dotted key: comment}) of one YAML file's text."""
    header: list[str] = []
    comments: dict[str, str] = {}
    above: list[str] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings the current line sits in
    seen_key = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            body = stripped[1:].strip()
            if not body.startswith("@package"):  # a Hydra directive, not prose
                above.append(body)
            continue
        if not stripped:
            if not seen_key:  # the header ends at its first blank line or key
                header, above = header + above, []
            continue
        match = KEY.match(line)
        if match is None or stripped.startswith("-"):  # a list item or a continuation line
            above = []
            continue
        if not seen_key:
            header, above, seen_key = header + above, [], True
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        _, inline = _split_comment(match["rest"] or "")
        text_ = " ".join([*above, inline]).strip()
        if text_:
            comments[".".join(k for _, k in stack)] = text_
        above = []
    return header, comments
