"""Attack tokens against an unlearned text-to-image model (``attack=``).

``SubspaceAttack`` (``attack=subspace``, arXiv 2504.21307): K attack tokens, token k's embedding a
non-negative mixture of the vocabulary embeddings v_i,

    alpha_ki = ReLU(g_k(v_i)),   m_k = sum_i alpha_ki v_i / sum_i alpha_ki,

g_k a small MLP per token (d -> ``hidden`` -> 1, ReLU) reading the standardised embedding (each
dimension centred and scaled over the vocabulary, so its input is O(1) whatever the encoder's scale).
The mixture is normalised by its total weight (a convex combination: the token stays inside the
vocabulary's hull, at a vocabulary-like norm; the paper leaves the scale open). At the start each
g_k's output bias is set so that about ``init_active`` words carry weight (a different random few per
token), so training starts from K distinct mixtures rather than K copies of the mean embedding.
Orthogonality among the K embeddings (``orthogonality``):

- ``project`` (default): sequential Gram-Schmidt in the forward pass, e_k = m_k minus its components
  along e_1..e_{k-1}, rescaled to m_k's norm: exact (to float precision) at every step;
- ``gram``: a penalty ``gram_weight`` * sum_{j != k} cos(e_j, e_k)^2 added to the loss: approximate.

The top-weighted vocabulary entries of each token (by alpha_k, normalised) are its word list.

``TokenEmbeddingAttack`` (``attack=unlearndiffatk``), the UnlearnDiffAtk-style baseline: K free prompt
token embeddings (started from random vocabulary words), optimised with the same loss, data and
budget; with ``discrete: true`` each is replaced by its nearest vocabulary embedding (cosine) after
training, so the attack is a real text prompt as in UnlearnDiffAtk. Its words are those nearest
entries.

``random_tokens`` is the random-token baseline: K vocabulary embeddings drawn uniformly (seeded).

All model weights stay frozen; Adam on the attack's own parameters; each step draws ``batch_size``
(image, timestep, noise) triples from a generator seeded with the job's seed.
"""

from __future__ import annotations

import logging
import math
import time

import torch
from torch import nn
from tqdm.auto import tqdm

from runner.diffusion.base import Attack, AttackContext, AttackResult
from runner.errors import ConfigError, TrainingDiverged
from runner.options import Range

log = logging.getLogger(__name__)
ORTHOGONALITY = ("project", "gram")


class DeadToken(ValueError):
    """A mixture whose weights are all zero."""

    def __init__(self, k: int):
        self.k = k
        super().__init__(f"attack token {k + 1}'s mixture lost every word (all weights 0)")


def special_ids(tokenizer) -> set[int]:
    return {i for i in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}


def max_abs_cosine(embeddings: torch.Tensor) -> float:
    """The largest |cos| between two different rows (0 for a single row)."""
    if embeddings.shape[0] < 2:
        return 0.0
    unit = torch.nn.functional.normalize(embeddings.double(), dim=1)
    gram = unit @ unit.T
    return float((gram - torch.diag(torch.diag(gram))).abs().max())


def gram_schmidt(mix: torch.Tensor) -> torch.Tensor:
    """Row k minus its components along the earlier (already orthogonal) rows, rescaled to its own norm."""
    out = []
    for k in range(mix.shape[0]):
        v = mix[k]
        for u in out:
            v = v - (v @ u) / (u @ u) * u
        out.append(v * (mix[k].norm() / v.norm().clamp_min(1e-12)))
    return torch.stack(out)


def random_tokens(vocab: torch.Tensor, k: int, seed: int, exclude: set[int]) -> tuple[torch.Tensor, list[int]]:
    allowed = torch.tensor([i for i in range(vocab.shape[0]) if i not in exclude])
    picks = allowed[torch.randperm(len(allowed), generator=torch.Generator().manual_seed(seed))[:k]]
    return vocab[picks].detach().float().cpu(), picks.tolist()


def word_entry(tokenizer, index: int, weight: float) -> dict:
    entry = tokenizer.convert_ids_to_tokens(int(index))
    return {"id": int(index), "entry": entry, "word": entry.removesuffix("</w>"), "weight": float(weight)}


def optimise(ctx: AttackContext, params, embed, steps: int, lr: float, batch_size: int, penalty=None) -> dict:
    """Adam on ``params`` for ``steps`` steps of the denoising loss of ``embed()`` (+ ``penalty(e)``);
    returns the training numbers. A non-finite loss stops the stage with its step."""
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(ctx.seed)
    device = ctx.loss.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    curve, began = [], time.perf_counter()
    for step in tqdm(range(steps), desc=ctx.stage, unit="step", dynamic_ncols=True):  # the stage that trains
        opt.zero_grad(set_to_none=True)
        try:
            e = embed()
        except DeadToken as exc:
            raise TrainingDiverged(
                ctx.stage, step, 0, text=str(exc), fix="lower attack.lr or raise attack.init_active"
            ) from None
        loss = ctx.loss.loss(ctx.encoder, e, ctx.loss.draw(batch_size, gen), ctx.defense)
        total = loss + penalty(e) if penalty is not None else loss
        if not torch.isfinite(total):
            raise TrainingDiverged(ctx.stage, step, total.item(), fix="lower attack.lr")
        total.backward()
        opt.step()
        curve.append(round(loss.item(), 6))
    seconds = time.perf_counter() - began
    numbers = {"steps": steps, "loss_curve": curve, "seconds": round(seconds, 3)}
    numbers["seconds_per_step"] = seconds / max(steps, 1)
    if device.type == "cuda":
        numbers["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return numbers


class Mixture(nn.Module):
    """K non-negative vocabulary mixtures: alpha = ReLU(g_k(standardised v_i)) for each token k."""

    def __init__(
        self, vocab: torch.Tensor, k: int, hidden: int, init_active: int, seed: int, keep: torch.Tensor | None = None
    ):
        super().__init__()
        v = vocab.detach().float()
        self.register_buffer("vocab", v)
        # the words a mixture may use (1) or not (0: bos / eos / pad)
        self.register_buffer("keep", torch.ones(v.shape[0]) if keep is None else keep.float())
        self.register_buffer("inputs", (v - v.mean(0)) / v.std(0).clamp_min(1e-8))
        gen = torch.Generator().manual_seed(seed)
        d = v.shape[1]
        self.w1 = nn.Parameter(torch.randn(k, d, hidden, generator=gen) / math.sqrt(d))
        self.b1 = nn.Parameter(torch.zeros(k, hidden))
        self.w2 = nn.Parameter(torch.randn(k, hidden, generator=gen) / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.zeros(k))
        with torch.no_grad():  # about init_active words per token carry weight at the start
            g = self.scores().masked_fill(self.keep == 0, -math.inf)
            active = min(init_active, g.shape[1] - 1)
            self.b2.copy_(-g.topk(active + 1, dim=1).values[:, -1])

    def scores(self) -> torch.Tensor:
        """g_k(v_i) for every token k and word i: [K, V]."""
        h = torch.relu(torch.einsum("vd,kdh->kvh", self.inputs, self.w1) + self.b1[:, None, :])
        return torch.einsum("kvh,kh->kv", h, self.w2) + self.b2[:, None]

    def weights(self) -> torch.Tensor:
        return torch.relu(self.scores()) * self.keep

    def forward(self) -> torch.Tensor:
        alpha = self.weights()
        total = alpha.sum(1, keepdim=True)
        if (total == 0).any():  # ReLU silenced every word: no gradient can bring the token back
            raise DeadToken(int((total[:, 0] == 0).nonzero()[0]))
        return (alpha @ self.vocab) / total


# the options both attacks share (n_tokens is also bounded by the text encoder: runner.diffusion.job)
SHARED_RANGES = {
    "n_tokens": Range(low=1, whole=True, example="5"),
    "steps": Range(low=0, whole=True, example="200"),
    "lr": Range(low=0, low_open=True, example="1e-3"),
    "batch_size": Range(low=1, whole=True, example="4"),
}


class SubspaceAttack(Attack):
    name = "subspace"
    option_ranges = {
        **SHARED_RANGES,
        "hidden": Range(low=1, whole=True, example="64"),
        "gram_weight": Range(low=0, low_open=True, example="1.0"),
        "init_active": Range(low=1, whole=True, example="16"),
        "top_words": Range(low=1, whole=True, example="10"),
    }

    def __init__(
        self,
        n_tokens: int = 5,
        hidden: int = 64,
        steps: int = 200,
        lr: float = 1e-3,
        batch_size: int = 4,
        orthogonality: str = "project",
        gram_weight: float = 1.0,
        init_active: int = 16,
        top_words: int = 10,
        exclude_special: bool = True,
    ):
        self.n_tokens, self.hidden, self.steps, self.lr = n_tokens, hidden, steps, float(lr)
        self.batch_size = batch_size
        if orthogonality not in ORTHOGONALITY:
            raise ConfigError("attack.orthogonality", f"`{orthogonality}` is not a choice", "use project or gram")
        self.orthogonality = orthogonality
        self.gram_weight, self.init_active, self.top_words = float(gram_weight), init_active, top_words
        self.exclude_special = bool(exclude_special)

    def build(self, ctx: AttackContext) -> Mixture:
        keep = torch.ones(ctx.vocab.shape[0], device=ctx.vocab.device)
        if self.exclude_special:  # bos / eos / pad carry no meaning as words: never part of a mixture
            keep[list(special_ids(ctx.tokenizer))] = 0
        return Mixture(ctx.vocab, self.n_tokens, self.hidden, self.init_active, ctx.seed, keep).to(ctx.vocab.device)

    def embed(self, mixture: Mixture) -> torch.Tensor:
        mix = mixture()
        return gram_schmidt(mix) if self.orthogonality == "project" else mix

    def fit(self, ctx: AttackContext) -> AttackResult:
        mixture = self.build(ctx)

        def penalty(e):
            unit = torch.nn.functional.normalize(e, dim=1)
            off = unit @ unit.T - torch.eye(len(e), device=e.device)
            return self.gram_weight * (off**2).sum()

        training = optimise(
            ctx,
            list(mixture.parameters()),
            lambda: self.embed(mixture),
            self.steps,
            self.lr,
            self.batch_size,
            penalty if self.orthogonality == "gram" else None,
        )
        with torch.no_grad():
            embeddings = self.embed(mixture).float().cpu()
            alpha = mixture.weights()
            alpha = (alpha / alpha.sum(1, keepdim=True).clamp_min(1e-12)).cpu()
        words = []
        for k in range(self.n_tokens):
            top = alpha[k].topk(min(self.top_words, int((alpha[k] > 0).sum()) or 1))
            words.append([word_entry(ctx.tokenizer, i, w) for w, i in zip(top.values, top.indices, strict=True)])
        training |= {
            "max_abs_cosine": max_abs_cosine(embeddings),
            "active_words": [int((alpha[k] > 0).sum()) for k in range(self.n_tokens)],
            "alpha_min": float(alpha.min()),
        }
        self.mixture = mixture  # kept for inspection (tests, notebooks)
        return AttackResult(embeddings=embeddings, words=words, training=training)


class TokenEmbeddingAttack(Attack):
    name = "unlearndiffatk"
    option_ranges = SHARED_RANGES

    def __init__(
        self, n_tokens: int = 5, steps: int = 200, lr: float = 1e-2, batch_size: int = 4, discrete: bool = True
    ):
        self.n_tokens, self.steps, self.lr, self.batch_size = n_tokens, steps, float(lr), batch_size
        self.discrete = bool(discrete)

    def fit(self, ctx: AttackContext) -> AttackResult:
        vocab = ctx.vocab.detach().float()
        start, _ = random_tokens(vocab, self.n_tokens, ctx.seed, special_ids(ctx.tokenizer))
        free = nn.Parameter(start.to(vocab.device))
        training = optimise(ctx, [free], lambda: free, self.steps, self.lr, self.batch_size)
        with torch.no_grad():
            cos = torch.nn.functional.normalize(free, dim=1) @ torch.nn.functional.normalize(vocab, dim=1).T
            cos[:, list(special_ids(ctx.tokenizer))] = -2
            nearest = cos.argmax(1)
            embeddings = (vocab[nearest] if self.discrete else free).detach().float().cpu()
        words = [[word_entry(ctx.tokenizer, int(i), float(cos[k, i]))] for k, i in enumerate(nearest.tolist())]
        training |= {"max_abs_cosine": max_abs_cosine(embeddings), "discrete": self.discrete}
        return AttackResult(embeddings=embeddings, words=words, training=training)
