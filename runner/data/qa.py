"""Question/answer sequences: prompt tokens masked out of the labels, EOS closes the answer."""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100  # label value skipped by the losses


@dataclass(frozen=True)
class PromptFormat:
    """How a model wants a question shown; ``{question}`` is replaced.

    ``special_tokens``: whether the tokenizer adds its own (BOS) in front. False for formats that
    are a rendered chat template which already starts with them, as ``apply_chat_template`` does.
    """

    question: str = "Question: {question}\nAnswer: "
    answer: str = "{answer}"
    special_tokens: bool = True
    # reasoning benchmarks: the prompt around a problem (None: ``question``), and the model's
    # start- and end-of-thinking tags (None: the model does not think in tags)
    reasoning: str | None = None
    think_end: str | None = None
    think_start: str | None = None

    @classmethod
    def from_cfg(cls, cfg) -> PromptFormat:
        return cls(
            question=cfg.question,
            answer=cfg.answer,
            special_tokens=bool(cfg.get("special_tokens", True)),
            reasoning=cfg.get("reasoning"),
            think_end=cfg.get("think_end"),
            think_start=cfg.get("think_start"),
        )

    def render(self, question: str, answer: str = "") -> str:
        """The exact text a model sees for a question (and answer)."""
        return self.question.format(question=question) + (self.answer.format(answer=answer) if answer else "")


def encode_qa(tokenizer, fmt: PromptFormat, question: str, answer: str, max_length: int) -> dict:
    """Token ids of prompt+answer+EOS and labels that score the answer (and EOS) only.

    The prompt is tokenised on its own and its length taken as the boundary
    when the joint tokenisation starts with exactly those tokens; otherwise
    (a merge across the boundary) the answer is tokenised separately.
    """
    prompt = fmt.question.format(question=question)
    answer_text = fmt.answer.format(answer=answer)
    prompt_ids = tokenizer(prompt, add_special_tokens=fmt.special_tokens)["input_ids"]
    full_ids = tokenizer(prompt + answer_text, add_special_tokens=fmt.special_tokens)["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids:
        # the tokenizer merged across the boundary (e.g. a prompt ending in a space): encode the
        # answer on its own so no answer token is mistaken for prompt
        full_ids = prompt_ids + tokenizer(answer_text, add_special_tokens=False)["input_ids"]
    if full_ids[-1] != tokenizer.eos_token_id:  # a chat format's answer may end in EOS already
        full_ids = full_ids + [tokenizer.eos_token_id]
    full_ids = full_ids[:max_length]
    n_prompt = min(len(prompt_ids), len(full_ids))
    labels = [IGNORE] * n_prompt + full_ids[n_prompt:]
    return {"input_ids": full_ids, "labels": labels}


def encode_prompt(tokenizer, fmt: PromptFormat, question: str) -> list[int]:
    return tokenizer(fmt.question.format(question=question), add_special_tokens=fmt.special_tokens)["input_ids"]


def pad_sequences(seqs: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    rows = [([value] * (width - len(s)) + s) if left else (s + [value] * (width - len(s))) for s in seqs]
    return torch.tensor(rows, dtype=torch.long)


def left_padded(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts padded on the left, with their attention mask: every row ends at the last position, where
    generation (or a cached continuation) starts."""
    ids = pad_sequences(seqs, pad_id, left=True).to(device)
    mask = pad_sequences([[1] * len(s) for s in seqs], 0, left=True).to(device)
    return ids, mask


def collate_qa(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch of encoded QA examples (extra integer fields, e.g. ``index``, pass through)."""
    batch = {
        "input_ids": pad_sequences([e["input_ids"] for e in examples], pad_id),
        "attention_mask": pad_sequences([[1] * len(e["input_ids"]) for e in examples], 0),
        "labels": pad_sequences([e["labels"] for e in examples], IGNORE),
    }
    if "index" in examples[0]:
        batch["index"] = torch.tensor([e["index"] for e in examples], dtype=torch.long)
    return batch
