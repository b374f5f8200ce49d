"""The subspace defence (``defense=subspace``): project the text encoder's token embeddings onto the
orthogonal complement of a learned attack subspace.

With Q an orthonormal basis of span{e_1..e_K} (the attack embeddings; from their SVD, directions
with a singular value below ``rank_tol`` times the largest dropped), every token embedding x the
text encoder looks up becomes

    P(x) = x - Q Q^T x,

so a vector outside the subspace is unchanged and every component inside it is removed. The
subspace comes from (``subspace``):

- ``learn``: a subspace attack trained in this job with the options in ``defense.learn`` (an
  ``attack=subspace`` node) against the undefended model; when the job's own attack has the same
  options, its result is reused rather than trained twice;
- a path to an ``attack_tokens.safetensors`` written by an earlier run (its ``embeddings``).

The projection is applied as a hook on the embedding layer (``runner/diffusion/prompts.py``), which
equals replacing the embedding matrix W by P(W) for vocabulary tokens and also projects any injected
attack embedding.
"""

from __future__ import annotations

from pathlib import Path

import torch

from runner.components import build
from runner.diffusion.base import Attack, AttackContext, AttackResult, Defense
from runner.errors import ConfigError
from runner.options import Range

TOKENS_FILE = "attack_tokens.safetensors"


def orthonormal_basis(embeddings: torch.Tensor, rank_tol: float = 1e-6) -> torch.Tensor:
    """[d, r] orthonormal columns spanning the rows of ``embeddings``."""
    _, s, vh = torch.linalg.svd(embeddings.double(), full_matrices=False)
    rank = int((s > rank_tol * s[0]).sum()) if len(s) and s[0] > 0 else 0
    return vh[:rank].T.contiguous()


class SubspaceDefense(Defense):
    name = "subspace"
    option_ranges = {"rank_tol": Range(low=0, high=1, high_open=True, example="1e-6")}  # relative to the largest

    def __init__(
        self, subspace: str = "learn", learn: dict | None = None, adaptive: bool = True, rank_tol: float = 1e-6
    ):
        self.subspace, self.adaptive, self.rank_tol = str(subspace), bool(adaptive), float(rank_tol)
        if self.subspace != "learn" and not Path(self.subspace).expanduser().is_file():
            raise ConfigError(
                "defense.subspace",
                f"`{self.subspace}` is neither `learn` nor an existing file",
                f"use learn, or the {TOKENS_FILE} of a finished run",
            )
        if self.subspace == "learn":
            if not learn:
                raise ConfigError("defense.learn", "no attack to learn the subspace with", "use defense=subspace")
            self.attack = build(learn, Attack, "defense.learn")  # options checked now, before any model loads
        self.basis: torch.Tensor | None = None
        self.source = ""

    def fit(self, ctx: AttackContext, attack_result: AttackResult | None = None, attack: Attack | None = None) -> None:
        if self.subspace != "learn":
            from safetensors.torch import load_file

            embeddings = load_file(str(Path(self.subspace).expanduser()))["embeddings"]
            if embeddings.shape[1] != ctx.vocab.shape[1]:
                raise ConfigError(
                    "defense.subspace",
                    f"its embeddings are {embeddings.shape[1]}-dimensional, the text encoder's {ctx.vocab.shape[1]}",
                    "give the tokens of a run of this text encoder",
                )
            self.source = self.subspace
        elif attack is not None and attack_result is not None and attack.options() == self.attack.options():
            embeddings, self.source = attack_result.embeddings, "the job's attack"
        else:
            result = self.attack.fit(AttackContext(**{**vars(ctx), "defense": None, "stage": "defense.learn"}))
            embeddings, self.source = result.embeddings, "learned by defense.learn"
            self.learned = result
        self.set_subspace(embeddings.to(ctx.vocab.device))

    def set_subspace(self, embeddings: torch.Tensor) -> None:
        self.basis = orthonormal_basis(embeddings, self.rank_tol).to(embeddings.device)

    def project(self, embeddings: torch.Tensor) -> torch.Tensor:
        q = self.basis.to(embeddings.device, embeddings.dtype)
        return embeddings - (embeddings @ q) @ q.T

    def describe(self) -> dict:
        out = {"source": self.source, "rank": 0 if self.basis is None else int(self.basis.shape[1])}
        learned = getattr(self, "learned", None)
        if learned is not None:  # the defence trained its own subspace attack: its words and training
            out |= {"words": learned.words, "training": learned.training}
        return out
