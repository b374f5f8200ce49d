"""The diffusion job's part of a report (preset key ``sections: [diffusion_images]``): each run's image
grids and per-token word lists, gathered next to the table.

Writes ``<stem>_images/<run>/<row>.png`` (copies of the run's grids) and ``<stem>_images.md``: per run
(labelled by its choices) the attack's words per token, the adaptive attack's where there is one, and
the grids as Markdown images. Runs without a ``diffusion`` block are skipped.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def _label(run: dict) -> str:
    choices = run.get("choices") or {}
    keys = ("diffusion_model", "concept", "attack", "defense", "detector")
    return ", ".join(f"{k}={choices[k]}" for k in keys if k in choices) or Path(run["_path"]).parent.name


def images_section(runs: list[dict], target: Path, stem: str) -> list[Path]:
    runs = [r for r in runs if r.get("diffusion") and r.get("status") == "completed"]
    if not runs:
        return []
    folder = target / f"{stem}_images"
    lines, files = [f"# Images and attack tokens ({len(runs)} runs)", ""], []
    for n, run in enumerate(sorted(runs, key=_label)):
        detail, run_dir = run["diffusion"], Path(run["_path"]).parent
        lines += [f"## {_label(run)}", "", f"`{run_dir}`", ""]
        for title, block in (("attack", detail.get("attack")), ("adaptive attack", detail.get("adaptive"))):
            if block and block.get("words"):
                lines += [f"**{title} tokens**", "", "| token | top vocabulary words (weight) |", "|---|---|"]
                for k, words in enumerate(block["words"]):
                    lines.append(f"| {k + 1} | " + ", ".join(f"{w['word']} ({w['weight']:.3f})" for w in words) + " |")
                lines.append("")
        for row, rel in detail.get("images", {}).items():
            source = run_dir / rel
            if not source.is_file():
                continue
            copy = folder / f"{n:03d}" / f"{row}.png"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
            files.append(copy)
            asr = (run.get("metrics", {}).get(row) or {}).get("asr")
            caption = f"{row}" + (f" (ASR {asr:.0%})" if asr is not None else "")
            lines += [f"{caption}: ![{row}]({copy.relative_to(target)})", ""]
    page = target / f"{stem}_images.md"
    page.write_text("\n".join(lines) + "\n")
    return [page, *files]
