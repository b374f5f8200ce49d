"""Reasoning-aware RMU (R²MU, arXiv 2506.12963): RMU, plus the model's own reasoning traces pushed to c * u and
chains of thought held at theta_0, all on the layer-l output h (the forward stops there, as RMU's):

    L = MSE(h(x_forget), c*u) + alpha * MSE(h(x_retain), h0(x_retain))
        + MSE(h(x_trace), c*u) + lambda * MSE(h(x_cot), h0(x_cot))

- x_trace: the model's greedy continuation of each forget document after the cue "Let's reason this
  step by step." and its start-of-thinking tag, cut to its first ``traces.train_tokens`` tokens
  with the cue in front (runner/methods/reasoning_traces.py; generated once, cached). A share of
  the documents (``traces.holdout``) is held out and only measured, before and after.
- x_cot: the chains of thought of a ``traces`` config (``method.cot``: GAIR/LIMO in the paper, the
  shipped GSM8K training solutions offline) followed by the model's end-of-thinking tag.
- Every mean is over real tokens only: padding never enters (the release averages padded positions
  in, so its terms shrink with the padding of each batch).
- Each training step pairs every forget example with a retain example, as RMU does (the same
  draws), and with a trace and a chain of thought drawn the same seeded way. h0 of the retain and
  chain-of-thought sets is computed once in ``prepare`` (RMU's activation cache), so a step costs
  four truncated forward passes, none of them theta_0's.
"""

from __future__ import annotations

import logging
import random

import torch

from runner.data.hub import resolve_path
from runner.data.qa import collate_qa
from runner.errors import ConfigError
from runner.methods.base import sum_parts
from runner.methods.reasoning_traces import cot_inputs, load_cot
from runner.methods.rmu import RMU
from runner.methods.rmu_losses import rmu_forget_loss, rmu_retain_loss
from runner.options import Range
from runner.training import PairedDataset

log = logging.getLogger(__name__)
PARTS = ("forget", "retain", "trace", "cot")
KEPT = ("retain", "cot")  # the parts held at theta_0; the others go to c * u


def r2mu_term(
    part: str, hidden: torch.Tensor, frozen: torch.Tensor | None, mask: torch.Tensor, control
) -> torch.Tensor:
    """One unweighted term: forget and trace activations to c * u, retain and chain-of-thought ones to theta_0's."""
    if part in KEPT:
        return rmu_retain_loss(hidden, frozen, mask)
    return rmu_forget_loss(hidden, mask, control)


def r2mu_weights(alpha: float, lam: float) -> dict[str, float]:
    return {"forget": 1.0, "retain": alpha, "trace": 1.0, "cot": lam}


def r2mu_loss(
    hidden: dict[str, torch.Tensor],
    frozen: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    control: torch.Tensor,
    alpha: float,
    lam: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The four-term loss on layer-l activations; ``hidden`` / ``masks`` per part (B, T, d) / (B, T), ``frozen``
    theta_0's activations of ``retain`` and ``cot``. Returns the total and the four unweighted terms."""
    terms = {p: r2mu_term(p, hidden[p], frozen.get(p), masks[p], control) for p in PARTS}
    weights = r2mu_weights(alpha, lam)
    total = sum(weights[p] * terms[p] for p in PARTS)
    return total, terms


class QuadDataset(PairedDataset):
    """RMU's forget / retain pairs (the same seeded draws), each with a trace and a chain of thought drawn alike."""

    def __init__(self, forget: list[dict], retain: list[dict], trace: list[dict], cot: list[dict], seed: int):
        super().__init__(forget, retain, seed)
        self.trace, self.cot = trace, cot

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        for name, pool in (("trace", self.trace), ("cot", self.cot)):
            item[name] = pool[random.Random(f"{self.seed}:{self.epoch}:{i}:{name}").randrange(len(pool))]
        return item


def collate_parts(pad_id: int):
    def collate(examples: list[dict]) -> dict:
        return {name: collate_qa([e[name] for e in examples], pad_id) for name in examples[0]}

    return collate


class R2MU(RMU):
    """RMU with a trace term (the model's own reasoning about forget documents, pushed to c * u) and a
    chain-of-thought term (kept at theta_0, weight ``lam``)."""

    strategies = ("none",)
    strategies_reason = "R²MU generates its traces and keeps its activation caches in one process"
    option_ranges = {
        "lam": Range(low=0, example="1.0"),
        "cot_max_tokens": Range(low=2, whole=True, example="512"),  # the end-of-thinking tag and a token of thought
    }

    def __init__(
        self,
        layer: int = 7,
        trainable_layers: list[int] | None = None,
        trainable_modules: list[str] | None = None,
        steering_coeff: float = 6.5,
        alpha: float = 1.7,
        lam: float = 1.0,
        traces: dict | None = None,
        cot: dict | None = None,
        cot_max_tokens: int = 512,
        trainable_params: str | None = None,
        activation_cache_mb: float = 4096,
    ):
        if traces is None:
            raise ConfigError("method.traces", "R²MU needs its trace settings", "keep conf/method/r2mu.yaml's `traces`")
        super().__init__(
            layer=layer,
            trainable_layers=trainable_layers,
            steering_coeff=steering_coeff,
            alpha=alpha,
            trainable_params=trainable_params,
            activation_cache_mb=activation_cache_mb,
            trainable_modules=trainable_modules,
            traces=traces,
        )
        self.lam = float(lam)
        if cot is None or "_target_" in cot or "layout" not in cot:
            raise ConfigError(
                "method.cot",
                "names no chains of thought",
                "compose a traces config there: traces@method.cot=limo (or gsm8k, offline)",
            )
        source = str(cot.get("source"))
        if source not in ("local", "hub") and not resolve_path(source).is_dir():  # caught before the model loads
            raise ConfigError(
                "method.cot.source",
                f"`{source}` is neither local, hub nor an existing directory",
                "use hub, or a directory laid out <dir>/<hub repo id>/<config>/<split>.parquet|jsonl "
                "(python scripts/fetch_data.py)",
            )
        self.cot_cfg, self.cot_max_tokens = cot, cot_max_tokens
        self.cot: list[dict] = []

    @classmethod
    def inputs(cls, method_cfg) -> list:
        from runner.distill.traces import inputs as trace_inputs

        return trace_inputs(method_cfg.cot, "method.cot") if method_cfg.get("cot") is not None else []

    def prepare(self, data) -> None:
        from omegaconf import OmegaConf

        texts = load_cot(OmegaConf.create(self.cot_cfg), "method.cot")  # bad data stops the job before generation
        think_end = getattr(data.fmt, "think_end", None)
        self.cot = cot_inputs(data.tokenizer, texts, think_end, self.cot_max_tokens)
        super().prepare(data)  # control vector, theta_0's weights, traces, then the activation cache
        if not self.trace_train:
            raise ConfigError(
                "method.traces.holdout",
                f"holds out every one of the {len(self.trace_eval)} forget documents' traces: none is left to train on",
                "lower method.traces.holdout (or give more forget documents)",
            )
        log.info(
            "R²MU: %d trace inputs to train on, %d held out, %d chains of thought",
            len(self.trace_train),
            len(self.trace_eval),
            len(self.cot),
        )

    def _activation_sets(self, data):
        return [*super()._activation_sets(data), ("trace", self.trace_train, False), ("cot", self.cot, True)]

    def _update(self, model, data, train, train_cfg) -> dict:
        return train(
            model,
            QuadDataset(data.forget, data.retain, self.trace_train, self.cot, data.seed),
            collate_parts(data.pad_id),
            self.loss,
            train_cfg,
            stage="unlearn",
            parts_fn=self.loss_parts,
        )

    def loss(self, model, batch):
        return sum_parts(R2MU.loss_parts(self, model, batch))  # its own split, even where a subclass redefines loss

    def loss_parts(self, model, batch):
        """The four weighted terms one at a time (the trainer back-propagates each before the next forward), each
        logged unweighted as ``r2mu_<part>``; their sum is ``r2mu_loss`` on the same activations."""
        weights = r2mu_weights(self.alpha, self.lam)
        for name in PARTS:
            part = batch[name]
            frozen = self._frozen(model, part, name) if name in KEPT else None
            term = r2mu_term(name, self._hidden(model, part, name), frozen, part["attention_mask"], self.control)
            yield weights[name] * term, {f"r2mu_{name}": term.item()}
