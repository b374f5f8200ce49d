"""Reference quantities computed once from the model before unlearning (theta_0), never a model copy."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from runner.scoring import score_sequences


@dataclass
class UnlearnData:
    """What ``prepare`` may look at: the model before unlearning and the encoded forget / retain sets."""

    model: torch.nn.Module
    forget: list[dict]  # encoded QA examples, each with an integer "index"
    retain: list[dict]
    encode: Callable[[list[dict]], list[dict]]  # {"question", "answer"} rows -> encoded examples
    pad_id: int
    batch_size: int  # for one-off passes (reference log-probs)
    precision: str
    seed: int
    forget_rows: list[dict] | None = None  # the raw {"question", "answer"} rows behind `forget`, same order


def forget_reference_logprobs(data: UnlearnData) -> torch.Tensor:
    """log pi_theta0(y|x) of every forget example, indexed by the example's ``index`` field."""
    scores = score_sequences(
        data.model, data.forget, data.pad_id, data.batch_size, data.precision, "reference log-probs"
    )
    logp = torch.zeros(max(e["index"] for e in data.forget) + 1, dtype=torch.float32)
    for example, (nll_sum, _) in zip(data.forget, scores, strict=True):
        logp[example["index"]] = -nll_sum
    return logp


class OriginalWeights:
    """The pre-unlearning values of the trainable parameters only.

    ``with original.active(): ...`` runs the model as theta_0 by swapping the
    parameters' storage (no copy per step); the frozen rest is shared.
    """

    def __init__(self, model: torch.nn.Module):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.saved = [p.detach().clone() for p in self.params]

    @contextlib.contextmanager
    def active(self):
        with torch.no_grad():
            self._swap()
            try:
                yield
            finally:
                self._swap()

    def _swap(self) -> None:
        for i, p in enumerate(self.params):
            current = p.data
            p.data = self.saved[i]
            self.saved[i] = current
        # autocast keeps one low-precision copy per parameter object for the whole autocast
        # region; after swapping storage that copy would be the other weights' cast
        torch.clear_autocast_cache()
