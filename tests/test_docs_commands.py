"""Every command in README.md and docs/*.md, as written: the cheap ones run, the rest compose with Hydra.

A command is a line of a fenced code block that starts the virtualenv's Python or torchrun (a trailing
backslash joins the next line). Each ``-m runner`` command is composed with its overrides exactly as
Hydra would compose its first job: the first value of each swept key (``-m``), and for a named sweep
(``+sweep=NAME``) the first point of its grid. Placeholders (``...``, ``RUN``, ``PATH``) stay as text,
which composing never opens; a command for the reader's own config folder (``hydra.searchpath``) is only
parsed. ``runner.report`` commands load their preset and settings; the scripts
named must exist. Composing is in-process and cheap; two commands also run for real as written.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from runner import rundir
from runner.__main__ import CONF_DIR
from runner.output.preset import load_preset
from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "sweeps" / "README.md"]
STARTS = (".venv/bin/python ", ".venv/bin/torchrun ", "python ", "torchrun ")


def commands(page: Path) -> list[str]:
    """The command lines of the page's fenced code blocks, continuation lines joined."""
    found, fence, pending = [], False, ""
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fence, pending = not fence, ""
            continue
        if not fence:
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if text.startswith(STARTS):
            found.append(text)
    return found


ALL = [(page.relative_to(ROOT).as_posix(), c) for page in PAGES for c in commands(page)]


def _split(command: str) -> list[str]:
    """The shell's words of ``command``: bash's ANSI-C quoting (``$'"<think>\\n"'``, a real newline) decoded first."""
    decoded = re.sub(
        r"\$'((?:[^'\\]|\\.)*)'",
        lambda m: shlex.quote(m.group(1).encode().decode("unicode_escape")),
        command,
    )
    return shlex.split(decoded, comments=True)


def _runner_args(tokens: list[str]) -> list[str] | None:
    """The overrides of a ``-m runner`` command (torchrun's own flags dropped); None for another module."""
    if "-m" not in tokens:
        return None
    at = tokens.index("-m")
    if tokens[at + 1] != "runner":
        return None
    return [t for t in tokens[at + 2 :] if t not in ("...", "-m", "--multirun")]


def _first_point(overrides: list[str]) -> list[str]:
    """Each swept override (``seed=0,1,2``) at its first value, as Hydra's first job would get it."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for text, override in zip(overrides, parsed, strict=True):
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()))
            out.append(f"{override.get_key_element()}={first}")
        else:
            out.append(text)
    return out


def _compose(overrides: list[str]):
    rundir.register_resolvers()
    overrides = _first_point(overrides)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        # a named sweep's grid (its file's hydra.sweeper.params) joins the command's overrides, as in each job
        named = [o for o in overrides if o.startswith("+sweep=")]
        params = compose("config", overrides=named, return_hydra_config=True).hydra.sweeper.get("params") or {}
        grid = [
            f"{k}={str(v).split(',')[0]}"
            for k, v in params.items()
            if not any(o.startswith(f"{k}=") for o in overrides)
        ]
        return compose("config", overrides=[*grid, *overrides], return_hydra_config=True)


def test_the_pages_hold_the_commands():
    pages = {page for page, _ in ALL}
    assert {"README.md", "sweeps/README.md"} <= pages and len(ALL) > 40


@pytest.mark.parametrize("page,command", ALL, ids=[f"{p}:{c[:60]}" for p, c in ALL])
def test_every_documented_command_is_written_to_run_and_composes(page, command):
    # as written: the virtualenv's interpreter, so the command works without an activated environment
    assert command.startswith((".venv/bin/python ", ".venv/bin/torchrun ")), f"{page}: {command}"
    tokens = _split(command)
    args = _runner_args(tokens)
    if args is not None and any(a.startswith("hydra.searchpath=") for a in args):
        # a command for the reader's own config folder (docs/extending.md): it parses, nothing here to compose with
        assert len(OverridesParser.create().parse_overrides(_first_point(args))) == len(args)
    elif args is not None:
        cfg = _compose(args)
        assert cfg.get("task") is not None
    elif "runner.report" in tokens:
        settings = [t for t in tokens if "=" in t and not t.startswith(("<", "outputs/"))]
        name = next((s.split("=", 1)[1] for s in settings if s.startswith("report=")), "tofu")
        load_preset(name, [s for s in settings if not s.startswith("report=")])
    else:
        script = next(t for t in tokens[1:] if t.endswith(".py"))
        assert (ROOT / script).is_file(), f"{page}: {script} does not exist"


def _as_written(command: str) -> list[str]:
    tokens = _split(command)
    return [sys.executable if t == ".venv/bin/python" else t for t in tokens]


def test_two_commands_run_for_real():
    # the README's first command, composed by the runner itself exactly as written (Hydra's --cfg job)
    first = next(c for p, c in ALL if p == "README.md" and _runner_args(_split(c)) == [])
    out = subprocess.run([*_as_written(first), "--cfg", "job"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"^method:", out.stdout, re.M) and "forget_split: forget01" in out.stdout
    # the report's help, which lists the presets
    report = next(c for _, c in ALL if "runner.report" in c and "--help" in c)
    out = subprocess.run(_as_written(report), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "presets (report=NAME" in out.stdout
