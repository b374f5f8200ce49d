"""``python -m runner.report DIR... [report=tofu] [key=value ...]``: paper-style tables and plots of a sweep.

The command; the report itself is ``runner.output.report``. A preset in ``conf/report/<name>.yaml``
says which runs form a row (``rows``: dotted keys into results.json such as ``choices.method`` or
``config.coreset.ratio``), which numbers are columns (a metric of the unlearned model, or any
dotted key; their labels and directions are ``runner/output/metrics.py``'s) and which plots to
draw; ``key=value`` arguments override the preset (OmegaConf dot-list syntax).

Each row is the mean ± sample standard deviation over the runs it groups (the seeds); the
reference models (target / original, retain) come first, as in the papers; the best value of
each column among the methods is bold. A failed or unfinished run is never dropped: its row is
marked (†) and a note says which run and why. Outputs: Markdown (printed), LaTeX (booktabs)
and CSV next to the input, plus the preset's plots as PNG and PDF.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from runner.errors import ConfigError
from runner.output.preset import PRESETS_DIR, load_preset
from runner.output.report import write_report


def _is_path(arg: str) -> bool:
    """An existing file or folder; a setting too long to be a file name is not one (and must not crash the check)."""
    try:
        return Path(arg).exists()
    except OSError:
        return False


def presets_help() -> str:
    """Each preset of conf/report with its title, rows and columns: what ``report=NAME`` would show."""
    lines = ["presets (report=NAME; default tofu), each with the keys it groups rows by and its columns:"]
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        preset = load_preset(path.stem)
        columns = [c if isinstance(c, str) else c.get("metric") or c.get("key") for c in preset.get("columns") or []]
        lines += [
            f"  {path.stem}: {preset.get('title', '')}",
            f"      rows={','.join(preset.get('rows') or [])}",
            f"      columns={','.join(map(str, columns))}",
        ]
    lines += [
        "settings (key=value, OmegaConf dot-list) override the preset's keys: name, title, row_header, rows,",
        "model_rows, references, columns, filter, plots, plot, out",
        "examples: report=tofu | report=generic rows=[choices.method,config.unlearn.learning_rate] "
        "columns=[forget_prob,model_utility] | out=paper/",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runner.report",
        description="Paper-style tables (Markdown, LaTeX, CSV) and plots from results.json files.",
        epilog=presets_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("args", nargs="+", help="run or sweep directories, then key=value settings")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    ns = parser.parse_args(argv)
    # sweep folders are named like `method=ga,seed=0`: an existing path is an input, not a setting
    inputs = [a for a in ns.args if "=" not in a or _is_path(a)]
    settings = [a for a in ns.args if a not in inputs]
    name = next((s.split("=", 1)[1] for s in settings if s.startswith("report=")), "tofu")
    try:
        preset = load_preset(name, [s for s in settings if not s.startswith("report=")])
        if not inputs:
            raise ConfigError("report inputs", "no directory given", "pass one or more run or sweep directories")
        result = write_report(inputs, preset, plots=not ns.no_plots)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result["markdown"])
    print("\nwrote: " + ", ".join(str(p) for p in result["files"]))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    sys.exit(main())
