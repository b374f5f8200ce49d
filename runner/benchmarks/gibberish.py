"""Gibberish: the share of generated forget answers a hub text classifier labels clean (open-unlearning's
``forget_Q_A_gibberish``, default classifier ``madhurjindal/autonlp-Gibberish-Detector-492513457``).

The classifier is read from the local hub cache only: an evaluation never waits on the network (a hub
lookup without one retries for about half a minute). Where it is not cached the metric is skipped and
the record says why and how to get it; it never fails the job.
"""

from __future__ import annotations

import torch

CLEAN = "clean"  # the detector's label for readable text (the others: mild / noise / word salad)


def score(generations: list[str], classifier: str | None, batch_size: int) -> tuple[list[float] | None, str]:
    """(per answer 1.0 if labelled clean else 0.0, or None when skipped; a note for the record)."""
    if not classifier:
        return None, "off (benchmark.gibberish.classifier is null)"
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(classifier, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(classifier, local_files_only=True).eval()
    except OSError:
        return None, (
            f"skipped: classifier `{classifier}` is not in the local hub cache; fetch it once with "
            f"`huggingface-cli download {classifier}` to score gibberish"
        )
    labels = {i: str(name).lower() for i, name in model.config.id2label.items()}
    if CLEAN not in labels.values():
        return None, f"skipped: classifier `{classifier}` has no `{CLEAN}` label (labels: {sorted(labels.values())})"
    out: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(generations), batch_size):
            enc = tokenizer(generations[start : start + batch_size], padding=True, truncation=True, return_tensors="pt")
            pred = model(**enc).logits.argmax(dim=-1).tolist()
            out += [float(labels[p] == CLEAN) for p in pred]
    return out, f"classifier `{classifier}`"
