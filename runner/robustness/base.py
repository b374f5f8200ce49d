"""The robustness attack contract: attack a model without training it, return the forget answers' score.

An attack is one entry of the ``robustness_attack`` mapping (``conf/robustness_attack/<name>.yaml``,
``_target_`` plus its options; several per job, ``robustness_attack=[quantize,prefill]``;
``robustness_attack=none`` for none). The stage (``runner.robustness.stage``) hands every attack
the unlearned model and then, as controls, the job's target and retain models, one at a time in
the same model object; the attack returns one point per setting (a bit width, a prefix length, a
number of in-context examples, a GCG run). Each point's ``value`` is the benchmark's own answer
metric on the evaluated forget questions: ROUGE-L recall of the greedy answer against the gold
answer (TOFU's forget ROUGE), so points of different attacks, models and methods compare.

An attack never changes the model it is given: quantization quantizes a copy, GCG only reads the
weights (gradients go to a one-hot input, not the parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from runner.data.qa import IGNORE, PromptFormat, encode_qa
from runner.decoding.generate import greedy_generate
from runner.errors import ConfigError
from runner.metrics.tofu import rouge_l_recall

KEY = "robustness_attack"
METRIC = "forget_rouge_recall"  # what every point's ``value`` is
UNCAPPED = 1 << 30  # a max_length that cuts nothing: a whole answer's tokens


@dataclass
class ProbeContext:
    """What an attack works with: one model (unlearned, or a control) and the questions it is asked."""

    model: object
    tokenizer: object
    fmt: PromptFormat
    rows: list[dict]  # the benchmark's forget rows ({"question", "answer"}): in-context and GCG draw from them
    precision: str  # resolved: fp32 or bf16
    batch_size: int  # sequences per forward pass when generating or scoring
    seed: int
    max_new_tokens: int  # greedy answer length (the benchmark's forget cap)
    max_length: int  # the benchmark's sequence cap, as its answers were tokenised
    model_kind: str = "unlearned"  # which model: unlearned, target or retain


@runtime_checkable
class RobustnessAttack(Protocol):
    """``name``: recorded; ``questions``: how many forget rows (the first ones) are evaluated."""

    name: str
    questions: int

    def check_data(self, rows: list[dict], tokenizer, fmt: PromptFormat, max_length: int) -> None:
        """Checks that need the benchmark's answers (prefill length, k, GCG target): before any training."""

    def run(self, ctx: ProbeContext) -> list[dict]:
        """Points ``{"setting", "strength", "value", ...}``: the forget ROUGE under each setting of the attack."""


def check_count(value, key: str, fix: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{KEY}.{key}", f"must be a whole number >= {minimum}, got {value!r}", fix)


def as_list(value) -> list:
    """A setting given as one value or a list (k: 4 or k: [1, 2, 4])."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


class QAProbe:
    """What the battery's attacks share: a name and the evaluated forget rows (the first ``questions``).

    The component builder checks a built attack is one of these; the contract is ``RobustnessAttack``.
    """

    def __init__(self, name: str, questions: int = 20):
        check_count(questions, f"{name}.questions", f"set {KEY}.{name}.questions to how many forget rows to attack")
        self.name, self.questions = str(name), questions

    def check_data(self, rows: list[dict], tokenizer, fmt: PromptFormat, max_length: int) -> None:
        """Most attacks need nothing from the answers."""

    def key(self, option: str) -> str:
        """The config key of one of this attack's options, for errors."""
        return f"{KEY}.{self.name}.{option}"


def split_answer(tokenizer, fmt: PromptFormat, question: str, answer: str, max_length: int) -> tuple[list, list]:
    """(prompt ids, answer ids without EOS) exactly as the benchmark tokenises the row."""
    encoded = encode_qa(tokenizer, fmt, question, answer, max_length)
    n_prompt = encoded["labels"].count(IGNORE)
    ids = encoded["input_ids"]
    answer_ids = ids[n_prompt:]
    if answer_ids and answer_ids[-1] == tokenizer.eos_token_id:
        answer_ids = answer_ids[:-1]
    return ids[:n_prompt], answer_ids


def answer_rouge(ctx: ProbeContext, prompts: list[list[int]], references: list[str], desc: str) -> list[float]:
    """ROUGE-L recall of each prompt's greedy continuation against its reference text."""
    answers = greedy_generate(
        ctx.model, ctx.tokenizer, prompts, ctx.max_new_tokens, ctx.batch_size, ctx.precision, desc
    )
    return rouge_l_recall(answers, references)


def evaluated(ctx_rows: list[dict], questions: int) -> list[dict]:
    """The rows an attack evaluates: the first ``questions`` forget rows (all of them if fewer)."""
    return ctx_rows[:questions]


def clean_value(ctx: ProbeContext, questions: int) -> float:
    """The forget ROUGE with no attack: the point every attack's recovery starts from."""
    rows = evaluated(ctx.rows, questions)
    prompts = [split_answer(ctx.tokenizer, ctx.fmt, r["question"], r["answer"], ctx.max_length)[0] for r in rows]
    scores = answer_rouge(ctx, prompts, [r["answer"] for r in rows], f"robustness clean ({ctx.model_kind})")
    return sum(scores) / len(scores)
