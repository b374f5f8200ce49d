"""GSM8K maths (shipped in data/gsm8k), the ILU paper's main attack (arXiv 2506.01339)."""

from __future__ import annotations

import numpy as np

from runner.attacks.base import KEY, AttackContext, FinetuneAttack
from runner.data import gsm8k
from runner.data.qa import encode_prompt
from runner.decoding.generate import greedy_generate
from runner.options import Range


class Gsm8kAttack(FinetuneAttack):
    """Fine-tune on GSM8K solutions (train split); exact match of the final number of the greedy
    solution on test questions (``max_new_tokens`` long at most)."""

    metric = "gsm8k_exact_match"

    option_ranges = {"max_new_tokens": Range(low=1, whole=True, example="256 (a GSM8K solution is ~100-200 tokens)")}

    def __init__(self, *args, max_new_tokens: int = 256, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_new_tokens = max_new_tokens

    def inputs(self) -> list:
        from runner.inputs import Input

        return [Input.file(KEY, gsm8k.DATA_DIR / f"{split}.jsonl") for split in ("train", "test")]

    def train_examples(self, ctx: AttackContext) -> list[dict]:
        return self.draw(ctx, gsm8k.load("train"))

    def task_score(self, ctx: AttackContext) -> float:
        rows = gsm8k.load("test")[: self.eval_examples]
        prompts = [encode_prompt(ctx.tokenizer, ctx.fmt, r["question"]) for r in rows]
        outputs = greedy_generate(
            ctx.model, ctx.tokenizer, prompts, self.max_new_tokens, ctx.eval_batch_size, ctx.precision, "gsm8k"
        )
        return float(np.mean([gsm8k.exact_match(o, r["answer"]) for o, r in zip(outputs, rows, strict=True)]))
