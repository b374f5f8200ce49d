"""A report of finished runs: the table in Markdown, LaTeX and CSV, plus the preset's plots as PNG and PDF.

Reads only the ``results.json`` files found (recursively) under the given run or sweep directories,
so it works offline and long after the runs. The command is ``python -m runner.report``
(``runner/report.py``).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from runner.errors import ConfigError
from runner.output import plots as plotting
from runner.output.frame import load_runs
from runner.output.render import to_csv, to_latex, to_markdown
from runner.output.table import build_table

# a model family's own report output (files beside the table), by the preset's ``sections``
SECTIONS = {
    "diffusion_images": "runner.diffusion.report.images_section",
    "robustness": "runner.output.robustness.robustness_section",
}


def _section(name: str):
    if name not in SECTIONS:
        raise ConfigError("report.sections", f"`{name}` unknown", f"use one of {', '.join(SECTIONS)}")
    module, _, function = SECTIONS[name].rpartition(".")
    return getattr(importlib.import_module(module), function)


def output_dir(inputs: list[str | Path], out: str | None) -> Path:
    """``out`` if given, else the deepest folder holding every input."""
    if out:
        return Path(out)
    resolved = [Path(p).resolve() for p in inputs]
    dirs = [p.parent if p.is_file() else p for p in resolved]
    return Path(os.path.commonpath([str(d) for d in dirs]))


def write_report(inputs: list[str | Path], preset: dict, out: str | None = None, plots: bool = True) -> dict:
    """Build the table (and plots) of ``inputs``; returns {"table": Table, "markdown": str, "files": [...], "runs": [...]}."""
    runs = load_runs(inputs)
    if not runs:
        raise ConfigError("report inputs", f"no results.json under {', '.join(map(str, inputs))}", "pass sweep dirs")
    table = build_table(runs, preset)
    target = output_dir(inputs, out or preset.get("out"))
    target.mkdir(parents=True, exist_ok=True)
    stem = f"report_{table.name}"
    files = []
    markdown = to_markdown(table)
    for ext, text in (("md", markdown + "\n"), ("tex", to_latex(table)), ("csv", to_csv(table))):
        path = target / f"{stem}.{ext}"
        path.write_text(text)
        files.append(path)
    if plots:
        for spec in preset.get("plots") or []:
            files += plotting.draw(spec, runs, table, preset, target / f"{stem}_{spec['kind']}")
    for name in preset.get("sections") or []:
        files += _section(name)(runs, target, stem)
    return {"table": table, "markdown": markdown, "files": files, "runs": runs}
