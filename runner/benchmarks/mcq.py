"""Zero-shot 4-choice questions in lm-eval-harness' layout (WMDP, MMLU): prompts, tokens, and the forward passes
that score each choice. The accuracy over the scores is pure arithmetic in ``runner.metrics.mcq``.

Prompt (lm-eval's ``mmlu`` / ``wmdp`` tasks, no few-shot examples)::

    The following are multiple choice questions (with answers) about {topic}.\\n\\n
    {question.strip()}\\nA. {choice 0}\\nB. {choice 1}\\nC. {choice 2}\\nD. {choice 3}\\nAnswer:

The candidates are the continuations " A", " B", " C", " D"; the prediction is
the one with the highest log-likelihood. Tokens follow lm-eval exactly:
``context`` = the prompt's ids, a continuation = ids(prompt + " A") with the
context's length cut off. When every continuation is one token appended to
the context (the usual case), one forward pass over the prompt scores all
four: log-softmax at the last prompt position, read at the four token ids.
The vocabulary projection runs at that one position only. Otherwise (a
tokenizer that merges across the boundary, or multi-token letters) each
choice is scored as a sequence, as lm-eval does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from runner.data.qa import IGNORE, pad_sequences
from runner.scoring import autocast, score_sequences, unwrap

LETTERS = ("A", "B", "C", "D")
DESCRIPTION = "The following are multiple choice questions (with answers) about {topic}.\n\n"


def mcq_prompt(question: str, choices: Sequence[str], topic: str) -> str:
    """lm-eval-harness' zero-shot prompt: description, question, lettered choices, ``Answer:``."""
    lines = [question.strip()] + [f"{letter}. {choice}" for letter, choice in zip(LETTERS, choices, strict=True)]
    return DESCRIPTION.format(topic=topic) + "\n".join(lines) + "\nAnswer:"


def subject_topic(subject: str) -> str:
    """MMLU's subject name as lm-eval writes it in the description: ``college_biology`` -> ``college biology``."""
    return subject.replace("_", " ")


@dataclass
class EncodedMCQ:
    context: list[int]
    continuations: list[list[int]]  # one per letter
    merged: bool = False  # the joint tokenisation is not context + continuation

    @property
    def single_token(self) -> bool:
        """True when each continuation is one token after the context: one forward pass scores them all."""
        return not self.merged and all(len(c) == 1 for c in self.continuations)


def encode_mcq(tokenizer, prompt: str) -> EncodedMCQ:
    """lm-eval's split of (prompt, " X") into context and continuation ids, for each letter."""
    context = tokenizer(prompt)["input_ids"]
    wholes = [tokenizer(prompt + " " + letter)["input_ids"] for letter in LETTERS]
    # lm-eval scores context + (whole minus the context's length); if a tokenizer merged across the
    # boundary that is not `whole`, and only the per-choice sequence path reproduces it
    merged = any(w[: len(context)] != context for w in wholes)
    return EncodedMCQ(context, [w[len(context) :] for w in wholes], merged)


@torch.inference_mode()
def choice_logprobs(
    model,
    encoded: list[EncodedMCQ],
    pad_id: int,
    batch_size: int,
    precision: str,
    desc: str = "questions",
    padding: str = "right",
    max_length: int | None = None,
) -> np.ndarray:
    """log P(" X" | prompt) for the four letters of every question, as an (N, 4) float64 array.

    Questions are batched in length order; ``padding`` ``right`` reads each
    row's last real position, ``left`` aligns prompts at the end and passes
    position ids so that padding shifts no position. A progress bar counts
    questions and shows the ETA. Contexts longer than ``max_length`` (default:
    the model's position limit) lose tokens on the left, as in lm-eval.
    """
    if padding not in ("right", "left"):
        raise ValueError(f"padding must be right or left, not {padding!r}")
    m = unwrap(model)
    device = next(m.parameters()).device
    max_length = max_length or model_max_length(m)
    if max_length:
        encoded = [_left_truncate(e, max_length) for e in encoded]
    out = np.zeros((len(encoded), len(LETTERS)), dtype=np.float64)
    fast = [i for i, e in enumerate(encoded) if e.single_token]
    slow = [i for i, e in enumerate(encoded) if not e.single_token]
    order = sorted(fast, key=lambda i: len(encoded[i].context), reverse=True)  # longest first: OOM shows at once
    head = m.get_output_embeddings()
    with tqdm(total=len(encoded), desc=desc, unit="question", leave=False) as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            contexts = [encoded[i].context for i in idx]
            left = padding == "left"
            input_ids = pad_sequences(contexts, pad_id, left=left).to(device)
            attention = pad_sequences([[1] * len(c) for c in contexts], 0, left=left).to(device)
            kwargs = {}
            if left:  # positions count real tokens only, as in an unpadded pass
                kwargs["position_ids"] = (attention.cumsum(dim=1) - 1).clamp(min=0)
            with autocast(precision, device):
                hidden = m.base_model(input_ids=input_ids, attention_mask=attention, **kwargs).last_hidden_state
                if left:
                    last = hidden[:, -1]
                else:
                    lengths = torch.tensor([len(c) for c in contexts], device=device)
                    last = hidden[torch.arange(len(idx), device=device), lengths - 1]
                logits = head(last)
            logp = torch.log_softmax(logits.float(), dim=-1)
            letters = torch.tensor([[c[0] for c in encoded[i].continuations] for i in idx], device=device)
            out[idx] = logp.gather(1, letters).double().cpu().numpy()
            bar.update(len(idx))
        if slow:
            out[slow] = _sequence_logprobs(m, [encoded[i] for i in slow], pad_id, batch_size, precision, desc)
            bar.update(len(slow))
    return out


def model_max_length(model) -> int | None:
    """The model's position limit, read from its config as lm-eval does (None when it states none)."""
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(model.config, attr, None)
        if value:
            return int(value)
    return None


def _left_truncate(e: EncodedMCQ, max_length: int) -> EncodedMCQ:
    """Keep the context's last tokens so that what the model reads fits ``max_length``.

    Single-token continuations keep ``max_length`` context tokens, exactly lm-eval's input
    (context + continuation)[-(max_length + 1):][:-1]. The per-choice path feeds whole sequences,
    so it keeps ``max_length`` minus the longest continuation (lm-eval keeps one token more there).
    """
    room = max_length if e.single_token else max_length - max(len(c) for c in e.continuations)
    if len(e.context) <= room:
        return e
    return EncodedMCQ(e.context[len(e.context) - room :], e.continuations, e.merged)


def _sequence_logprobs(model, encoded: list[EncodedMCQ], pad_id: int, batch_size: int, precision: str, desc: str):
    """Fallback: each (context + continuation) scored as a sequence, the continuation's log-probs summed."""
    seqs = []
    for e in encoded:
        for cont in e.continuations:
            ids = e.context + cont
            seqs.append({"input_ids": ids, "labels": [IGNORE] * len(e.context) + cont})
    nll = score_sequences(model, seqs, pad_id, batch_size, precision, f"{desc} (per choice)")[:, 0]
    return -nll.reshape(len(encoded), len(LETTERS))
