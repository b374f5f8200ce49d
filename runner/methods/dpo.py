"""DPO for unlearning (Rafailov et al., 2023, as open-unlearning's DPO trainer): an alternate answer to each forget
question is preferred, the forget answer rejected.

loss = -(2/beta) * E_{D_f} log sigmoid(beta * [(log pi_theta(y_alt|x) - log pi_theta0(y_alt|x))
                                               - (log pi_theta(y|x)     - log pi_theta0(y|x))])
       + alpha * E_{D_r} l(y|x)

Sequence log-probs are sums over answer tokens. At theta = theta_0 the forget term is (2/beta) * ln 2.

Where the alternates come from is the only difference between the DPO methods here:

- ``DPO``: a JSON Lines file (``method.alternates``), one row per question with ``question`` and
  ``alternate`` (a string or a list of strings; other keys are ignored, so open-unlearning's AltPO
  files read as they are; a question on several rows collects all their alternates);
- ``IdkDPO`` (idkdpo.py): a refusal, "I don't know", for every question;
- ``AltPO`` (altpo.py): answers the model itself writes with made-up facts.

Each forget question gets one alternate, drawn once per run from its candidates with
``random.Random(seed)``, so a rerun with the same seed pairs them the same way. ``prepare`` encodes
the (question, alternate) pairs and computes log pi_theta0 of both answers once; each step then
scores the forget and the alternate sequences of the batch in one forward pass (two right-padded
batches stacked).
"""

from __future__ import annotations

import dataclasses
import random

import torch
import torch.nn.functional as F

from runner.data.qa import IGNORE, collate_qa
from runner.errors import ConfigError
from runner.methods.base import ForgetRetainMethod
from runner.methods.theta0 import forget_reference_logprobs
from runner.options import Range
from runner.scoring import mean_nll, sequence_logprob


def dpo_forget_loss(
    logp_alt: torch.Tensor,
    logp_alt_ref: torch.Tensor,
    logp: torch.Tensor,
    logp_ref: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """-(2/beta) * mean log sigmoid(beta * ((logp_alt - logp_alt_ref) - (logp - logp_ref)))."""
    margin = (logp_alt - logp_alt_ref) - (logp - logp_ref)
    return -(2.0 / beta) * F.logsigmoid(beta * margin).mean()


def _pad_to(t: torch.Tensor, width: int, value: int) -> torch.Tensor:
    return F.pad(t, (0, width - t.shape[1]), value=value)


def stack_batches(a: dict, b: dict, pad_id: int) -> dict:
    """Two right-padded QA batches as one (rows of ``a`` first), padded to the wider of the two."""
    width = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE}
    return {k: torch.cat([_pad_to(a[k], width, v), _pad_to(b[k], width, v)]) for k, v in fill.items()}


def read_alternates(path, key: str = "method.alternates") -> dict[str, list[str]]:
    """question -> its alternate answers, from a JSON Lines file of {question, alternate} rows."""
    from runner.data.files import read_jsonl
    from runner.data.hub import resolve_path

    path = resolve_path(path)
    out: dict[str, list[str]] = {}
    for n, row in enumerate(read_jsonl(path, key), 1):
        alt = row.get("alternate") if isinstance(row, dict) else None
        alts = [alt] if isinstance(alt, str) else alt
        question = row.get("question") if isinstance(row, dict) else None
        if not isinstance(question, str) or not alts or not all(isinstance(a, str) and a.strip() for a in alts):
            raise ConfigError(
                key,
                f"{path} line {n} is not a {{question, alternate}} row with a non-empty alternate answer",
                'write one JSON object a line: {"question": "...", "alternate": "..." or ["...", ...]}',
            )
        out.setdefault(question.strip(), []).extend(a.strip() for a in alts)
    if not out:
        raise ConfigError(key, f"{path} holds no rows", "give one {question, alternate} row per forget question")
    return out


def draw_alternates(candidates: list[list[str]], seed: int) -> list[str]:
    """One candidate per question, in order, drawn with ``random.Random(seed)``."""
    rng = random.Random(seed)
    return [rng.choice(c) for c in candidates]


class DPO(ForgetRetainMethod):
    option_ranges = {"beta": Range(low=0, low_open=True, example="0.1")}  # the loss divides by beta
    forget_name = "dpo_forget"

    @classmethod
    def inputs(cls, method_cfg) -> list:
        from runner.data.hub import resolve_path
        from runner.inputs import Input

        path = method_cfg.get("alternates")
        return [Input.file("method.alternates", resolve_path(path), format="jsonl")] if path else []

    def __init__(self, alternates: str | None = None, beta: float = 0.1, alpha: float = 1.0, gamma: float = 1.0):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta <= 0:
            raise ConfigError("method.beta", f"must be a number > 0, got {beta!r}", "e.g. 0.1 (open-unlearning's)")
        self.beta, self.alpha, self.gamma = float(beta), alpha, gamma
        self.alternates = self._read(alternates)  # a bad file stops the job before the model loads
        self.alt_examples: dict[int, dict] = {}  # forget index -> encoded (question, alternate)
        self.forget_logprobs_ref: torch.Tensor | None = None
        self.alt_logprobs_ref: torch.Tensor | None = None
        self.pad_id = 0

    def _read(self, alternates) -> dict[str, list[str]] | None:
        if alternates is None:
            raise ConfigError(
                "method.alternates",
                "DPO needs a file of alternate answers",
                "set method.alternates=PATH (JSON Lines of {question, alternate}), or use method=idkdpo "
                "(refusals) or method=altpo (alternates the model writes itself)",
            )
        return read_alternates(alternates)

    def candidates(self, data) -> list[list[str]]:
        """The candidate preferred answers of each forget row, in ``data.forget_rows``' order."""
        missing = [r["question"] for r in data.forget_rows if r["question"].strip() not in self.alternates]
        if missing:
            raise ConfigError(
                "method.alternates",
                f"has no alternate for {len(missing)} of the {len(data.forget_rows)} forget questions, "
                f"e.g. {missing[0]!r}",
                "give every forget question a row (matched on the question text)",
            )
        return [self.alternates[r["question"].strip()] for r in data.forget_rows]

    def prepare(self, data) -> None:
        rows = getattr(data, "forget_rows", None)
        if rows is None or len(rows) != len(data.forget):
            raise ValueError(
                f"{type(self).__name__.lower()} needs data.forget_rows: the forget {{question, answer}} rows, "
                "in data.forget's order"
            )
        chosen = draw_alternates(self.candidates(data), data.seed)
        alt_rows = [{"question": r["question"], "answer": a} for r, a in zip(rows, chosen, strict=True)]
        # encode() numbers its rows from 0: tag each alternate with the index of its forget example instead
        alt = [{**enc, "index": ex["index"]} for enc, ex in zip(data.encode(alt_rows), data.forget, strict=True)]
        self.alt_examples = {e["index"]: e for e in alt}
        self.pad_id = data.pad_id
        self.forget_logprobs_ref = forget_reference_logprobs(data)
        self.alt_logprobs_ref = forget_reference_logprobs(dataclasses.replace(data, forget=alt))

    def forget_term(self, model, batch) -> torch.Tensor:
        forget = batch["forget"]
        device = forget["input_ids"].device
        index = forget["index"]
        alt = collate_qa([self.alt_examples[i] for i in index.tolist()], self.pad_id)
        alt = {k: v.to(device) for k, v in alt.items()}
        logp_all, _ = sequence_logprob(model, stack_batches(forget, alt, self.pad_id))
        n = index.shape[0]
        logp, logp_alt = logp_all[:n], logp_all[n:]
        index = index.to(self.forget_logprobs_ref.device)
        logp_ref = self.forget_logprobs_ref[index].to(device)
        logp_alt_ref = self.alt_logprobs_ref[index].to(device)
        return dpo_forget_loss(logp_alt, logp_alt_ref, logp, logp_ref, self.beta)

    def retain_term(self, model, batch) -> torch.Tensor:
        return mean_nll(model, batch["retain"])
