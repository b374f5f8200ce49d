"""GSM8K (shipped in data/gsm8k): grade-school maths; the gold answer ends with ``#### <number>``."""

from __future__ import annotations

import re
from pathlib import Path

from runner.data.files import read_jsonl

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "gsm8k"
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")  # 1,234.5 and -7; a sentence's full stop is not a decimal


def load(split: str) -> list[dict]:
    """``{"question", "answer"}`` rows of ``train`` (7473) or ``test`` (1319), in file order."""
    rows = read_jsonl(DATA_DIR / f"{split}.jsonl", "finetune_attack")
    return [{"question": r["question"], "answer": r["answer"]} for r in rows]


def final_number(text: str) -> str | None:
    """The answer a solution commits to: the first number after ``####``, else the last number in the text."""
    tail = text.split("####", 1)[1] if "####" in text else None
    found = NUMBER.findall(tail) if tail is not None else []
    if not found:
        found = NUMBER.findall(text)
        found = found[-1:]
    if not found:
        return None
    return found[0].replace(",", "")


def exact_match(prediction: str, gold: str) -> bool:
    """Does the generated solution end at the gold solution's final number (commas and trailing .0 ignored)?"""
    p, g = final_number(prediction), final_number(gold)
    if p is None or g is None:
        return False
    return float(p) == float(g)
