"""AltPO, alternate preference optimisation (Mekala et al., 2024, arXiv 2409.13474): DPO (dpo.py) whose preferred
answers are alternates the model itself writes, with made-up facts, for each forget question.

Generation (open-unlearning's community/methods/AltPO/generate.py, here through the runner's shared loop
``runner.decoding.generate.generate``): theta_0 is shown each forget question with its answer and asked for
another answer that changes every fact (``instruction``), in the model's prompt format, with the reply
begun as "Alternate Answer:"; it samples ``samples`` continuations per question at ``temperature``, each cut
at the first stop string ("Question:", "Q:") and stripped. Training draws one of them per question with the
job's seed (dpo.py); empty ones are dropped.

Generation is the expensive part and is fixed by the model's weights, the prompts and the sampling settings
(its own ``generation_seed``, so the seeds of a sweep share one set), so the result is cached content-addressed
(``<cache>/altpo_alternates/<key>``) through ``runner.cache.CacheEntry``, as R²MU's traces are: written in a
private temporary directory and renamed into place once complete, and a second job with the same key
generates nothing. The key holds a fingerprint of the weights themselves, since the model that unlearns (the
fine-tuned TOFU target) is not the one ``model.*`` names.
"""

from __future__ import annotations

import json
import logging

import torch

from runner.cache import CacheEntry, content_key
from runner.errors import ConfigError
from runner.methods.dpo import DPO
from runner.options import COUNT, Range, check_number

log = logging.getLogger(__name__)
INSTRUCTION = (
    "Now pretend you are making things up. Write another answer to the question that is of a different template "
    "than the given answer and changes all facts from what are introduced in the given answer (changed answers "
    "must be plausible while being inconsistent with given answer). Ensure that your alternate answer is a "
    "plausible response to the question and doesn't change any details mentioned in question and only "
    "introduces changes to all the facts introduced answer."
)  # open-unlearning's instruction for Llama-3.2 (its generate.py), word for word: the prompt is data
REQUEST = "Question: {question}\nAnswer: {answer}\n{instruction}"
REPLY_START = "Alternate Answer:"
STOP = ("Question:", "Q:")
ALTERNATES_FILE = "alternates.json"


def weights_fingerprint(model) -> str:
    """A digest of every parameter's name, shape and (float64) sum and sum of squares: cheap on any device, and
    different for the base model and any model fine-tuned from it."""
    from runner.scoring import unwrap

    with torch.no_grad():
        parts = [
            [name, list(p.shape), float(p.double().sum()), float(p.double().square().sum())]
            for name, p in unwrap(model).named_parameters()
        ]
    return content_key(parts)


def alternate_prompts(tokenizer, fmt, rows: list[dict], instruction: str = INSTRUCTION) -> list[list[int]]:
    """Each forget row's request in the model's prompt format, followed by the start of the reply."""
    texts = [
        fmt.question.format(
            question=REQUEST.format(question=r["question"], answer=r["answer"], instruction=instruction)
        )
        + REPLY_START
        for r in rows
    ]
    return [tokenizer(t, add_special_tokens=fmt.special_tokens)["input_ids"] for t in texts]


def clean_alternate(text: str) -> str:
    """The reply up to the first stop string, stripped."""
    for stop in STOP:
        text = text.split(stop)[0]
    return text.strip()


class AltPO(DPO):
    option_ranges = {
        "samples": Range(low=1, whole=True, example="1"),
        "max_new_tokens": Range(low=1, whole=True, example="200"),
        "temperature": Range(low=0, example="1.0"),
        "batch_size": Range(low=1, whole=True, example="8"),
        "generation_seed": Range(low=0, whole=True, example="0"),
    }
    forget_name = "altpo_forget"
    strategies = ("none",)
    strategies_reason = "AltPO generates its alternates in one process before training"

    @classmethod
    def inputs(cls, method_cfg) -> list:
        return []

    def __init__(
        self,
        beta: float = 0.1,
        alpha: float = 1.0,
        gamma: float = 1.0,
        samples: int = 1,
        max_new_tokens: int = 200,
        temperature: float = 1.0,
        batch_size: int = 8,
        generation_seed: int = 0,
        instruction: str = INSTRUCTION,
    ):
        super().__init__(alternates=None, beta=beta, alpha=alpha, gamma=gamma)
        for name, value in (("samples", samples), ("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
            check_number(f"method.{name}", value, COUNT, "e.g. 1, 200, 8")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ConfigError("method.temperature", f"must be > 0, got {temperature!r}", "1.0, as open-unlearning")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ConfigError("method.instruction", "is empty", "keep conf/method/altpo.yaml's default")
        self.samples, self.max_new_tokens, self.batch_size = samples, max_new_tokens, batch_size
        self.temperature, self.generation_seed, self.instruction = float(temperature), int(generation_seed), instruction
        self.generated: list[list[str]] = []

    def _read(self, alternates) -> None:
        return None  # the alternates are generated in prepare

    def candidates(self, data) -> list[list[str]]:
        if data.tokenizer is None or data.fmt is None or data.cache_dir is None:
            raise ValueError("altpo needs data.tokenizer, data.fmt and data.cache_dir to generate its alternates")
        self.generated = self.generate(data)
        fallback = [r["answer"] for r in data.forget_rows]
        empty = sum(not c for c in self.generated)
        if empty:
            log.warning("AltPO: %d forget questions got only empty alternates; they keep no preferred answer", empty)
        # a question left without an alternate is paired with nothing better than its own answer (margin 0)
        return [c or [f] for c, f in zip(self.generated, fallback, strict=True)]

    def generate(self, data) -> list[list[str]]:
        """The cleaned, non-empty alternates of each forget row, from the cache when complete."""
        prompts = alternate_prompts(data.tokenizer, data.fmt, data.forget_rows, self.instruction)
        settings = {
            "samples": self.samples,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "seed": self.generation_seed,
        }
        key = content_key(
            {
                "model": data.model_identity,
                "weights": weights_fingerprint(data.model),
                "prompts": content_key(prompts),
                "precision": data.precision,
                **settings,
            }
        )
        entry = CacheEntry(data.cache_dir, "altpo_alternates", key, f"AltPO alternates of {len(prompts)} questions")
        if entry.ready():
            return json.loads((entry.path / ALTERNATES_FILE).read_text())["alternates"]
        try:
            building = entry.start()
            texts = self._sample(data, prompts)
            alternates = [[a for a in (clean_alternate(t) for t in row) if a] for row in texts]
            (building / ALTERNATES_FILE).write_text(json.dumps({"alternates": alternates}))
            entry.finish({"questions": len(prompts), **settings})
        except BaseException:
            entry.abandon()  # the temporary directory goes; no entry is left behind
            raise
        return alternates

    def _sample(self, data, prompts: list[list[int]]) -> list[list[str]]:
        from runner.decoding.base import DecodingContext
        from runner.decoding.generate import generate
        from runner.decoding.strategies import Decoding
        from runner.scoring import unwrap

        strategy = Decoding(
            "altpo", do_sample=True, temperature=self.temperature, n=self.samples, seed=self.generation_seed
        )
        m = unwrap(data.model)
        was_training = m.training
        m.eval()
        try:
            run = generate(
                m,
                data.tokenizer,
                prompts,
                strategy,
                DecodingContext(tokenizer=data.tokenizer),
                self.max_new_tokens,
                self.batch_size * self.samples,
                data.precision,
                "AltPO alternates",
            )
        finally:
            m.train(was_training)
        log.info("AltPO: %d alternates, %s", len(prompts) * self.samples, run.stats)
        texts = [[data.tokenizer.decode(g.ids, skip_special_tokens=True) for g in row] for row in run.outputs]
        return texts
