"""IdkDPO: DPO with a refusal ("I don't know") as the preferred answer and the forget answer as the rejected one.

loss = -(2/beta) * E_{D_f} log sigmoid(beta * [(log pi_theta(y_idk|x) - log pi_theta0(y_idk|x))
                                               - (log pi_theta(y|x)     - log pi_theta0(y|x))])
       + alpha * E_{D_r} l(y|x)

Sequence log-probs are sums over answer tokens. At theta = theta_0 the forget
term is (2/beta) * ln 2.

Each forget question gets one refusal y_idk, drawn once per run from the lines
of ``data/tofu/idontknow.jsonl`` (plain text, one refusal a line) with
``random.Random(seed)``, so a rerun with the same seed pairs them the same way.
``prepare`` encodes the (question, refusal) pairs and computes log pi_theta0 of
both answers once; each step then scores the forget and the refusal sequences
of the batch in one forward pass (two right-padded batches stacked).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import torch
import torch.nn.functional as F

from runner.data import tofu
from runner.data.files import read_lines
from runner.data.qa import IGNORE, collate_qa
from runner.methods.base import ForgetRetainMethod
from runner.methods.theta0 import forget_reference_logprobs
from runner.options import Range
from runner.scoring import mean_nll, sequence_logprob

IDK_FILE = Path(tofu.PROJECT_DATA) / "idontknow.jsonl"


def idkdpo_forget_loss(
    logp_idk: torch.Tensor,
    logp_idk_ref: torch.Tensor,
    logp: torch.Tensor,
    logp_ref: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """-(2/beta) * mean log sigmoid(beta * ((logp_idk - logp_idk_ref) - (logp - logp_ref)))."""
    margin = (logp_idk - logp_idk_ref) - (logp - logp_ref)
    return -(2.0 / beta) * F.logsigmoid(beta * margin).mean()


def read_refusals(path: Path = IDK_FILE) -> list[str]:
    return [line.strip() for line in read_lines(path, "method") if line.strip()]


def _pad_to(t: torch.Tensor, width: int, value: int) -> torch.Tensor:
    return F.pad(t, (0, width - t.shape[1]), value=value)


def stack_batches(a: dict, b: dict, pad_id: int) -> dict:
    """Two right-padded QA batches as one (rows of ``a`` first), padded to the wider of the two."""
    width = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE}
    return {k: torch.cat([_pad_to(a[k], width, v), _pad_to(b[k], width, v)]) for k, v in fill.items()}


class IdkDPO(ForgetRetainMethod):
    forget_name = "idkdpo_forget"
    option_ranges = {"beta": Range(low=0, low_open=True, example="0.1")}  # the loss divides by beta

    @staticmethod
    def inputs(method_cfg) -> list:
        from runner.inputs import Input

        return [Input.file("method", IDK_FILE, format="text")]  # one refusal per line, not JSON

    def __init__(self, beta: float = 0.1, alpha: float = 1.0):
        self.beta, self.alpha = beta, alpha
        self.idk_examples: dict[int, dict] = {}  # forget index -> encoded (question, refusal)
        self.forget_logprobs_ref: torch.Tensor | None = None
        self.idk_logprobs_ref: torch.Tensor | None = None
        self.pad_id = 0

    def prepare(self, data) -> None:
        rows = getattr(data, "forget_rows", None)
        if rows is None or len(rows) != len(data.forget):
            raise ValueError(
                "idkdpo needs data.forget_rows: the forget {question, answer} rows, in data.forget's order"
            )
        refusals = read_refusals()
        rng = random.Random(data.seed)
        idk_rows = [{"question": r["question"], "answer": rng.choice(refusals)} for r in rows]
        # encode() numbers its rows from 0: tag each refusal with the index of its forget example instead
        idk = [{**enc, "index": ex["index"]} for enc, ex in zip(data.encode(idk_rows), data.forget, strict=True)]
        self.idk_examples = {e["index"]: e for e in idk}
        self.pad_id = data.pad_id
        self.forget_logprobs_ref = forget_reference_logprobs(data)
        self.idk_logprobs_ref = forget_reference_logprobs(dataclasses.replace(data, forget=idk))

    def forget_term(self, model, batch) -> torch.Tensor:
        forget = batch["forget"]
        device = forget["input_ids"].device
        index = forget["index"]
        idk = collate_qa([self.idk_examples[i] for i in index.tolist()], self.pad_id)
        idk = {k: v.to(device) for k, v in idk.items()}
        logp_all, _ = sequence_logprob(model, stack_batches(forget, idk, self.pad_id))
        n = index.shape[0]
        logp, logp_idk = logp_all[:n], logp_all[n:]
        index = index.to(self.forget_logprobs_ref.device)
        logp_ref = self.forget_logprobs_ref[index].to(device)
        logp_idk_ref = self.idk_logprobs_ref[index].to(device)
        return idkdpo_forget_loss(logp_idk, logp_idk_ref, logp, logp_ref, self.beta)

    def retain_term(self, model, batch) -> torch.Tensor:
        return mean_nll(model, batch["retain"])
