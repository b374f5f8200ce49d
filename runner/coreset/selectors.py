"""The selectors of ``conf/coreset`` (the coreset effect, arXiv 2504.10185).

Scoring selectors make one batched pass over the forget set with the model before
unlearning (theta_0) and keep the examples whose score ranks first:

- ``random``: a seeded uniform sample;
- ``loss``: mean answer-token NLL under theta_0, highest (``order: high``) or lowest first;
- ``gradnorm`` (GraNd): the norm of the per-example gradient of that loss over the
  trainable parameters (``torch.func`` vmap of grad, ``batch_size`` examples at a time);
- ``moderate``: the mean last-layer hidden state of each example; keep those whose
  distance to the centroid is closest to the median distance;
- ``keyword``: the forget set's top TF-IDF words; ``mode: rich`` keeps the examples
  whose TF-IDF mass on them is largest, ``mode: keyword_only`` also replaces each kept
  example's text (the answer of a QA row) by just the keywords it contains.

Rows are QA rows ``{"question", "answer"}`` (TOFU, MUSE knowmem) or text rows
``{"text"}`` (WMDP, MUSE raw); the model only ever sees them through the benchmark's ``encode``.
"""

from __future__ import annotations

import abc
import random
from collections import Counter

import numpy as np

from runner.coreset.base import Pool, Selector, check_choice, rank_by
from runner.coreset.keywords import row_text, tfidf, top_keywords, words
from runner.coreset.per_example import mean_hidden_states, per_example_grad_norms
from runner.options import Range
from runner.scoring import score_sequences

ORDERS = ("high", "low")


class RandomSelector(Selector):
    """A seeded uniform sample: the coreset paper's headline selector."""

    def rank(self, pool: Pool) -> list[int]:
        ids = list(range(len(pool.rows)))
        random.Random(self.seed).shuffle(ids)
        return ids


class _ScoreOrderSelector(Selector):
    """Examples by one score each, highest first (``order: high``) or lowest first (``order: low``)."""

    def __init__(self, name: str, ratio: float, seed: int = 0, match_steps: bool = True, order: str = "high"):
        super().__init__(name, ratio, seed, match_steps)
        check_choice("order", order, ORDERS, "an order")
        self.order = order

    @abc.abstractmethod
    def score(self, pool: Pool) -> np.ndarray:
        """One score per row of ``pool``, in row order."""

    def rank(self, pool: Pool) -> list[int]:
        scores = self.score(pool)
        self.scores = scores.tolist()
        return rank_by(scores, descending=self.order == "high")

    def describe(self) -> dict:
        return {"order": self.order}


class LossSelector(_ScoreOrderSelector):
    """Mean answer-token NLL under theta_0; ``order: high`` keeps the hardest examples first."""

    def score(self, pool: Pool) -> np.ndarray:
        sums = score_sequences(pool.model, pool.encoded, pool.pad_id, pool.batch_size, pool.precision, "coreset loss")
        return sums[:, 0] / np.maximum(sums[:, 1], 1)


class GradNormSelector(_ScoreOrderSelector):
    """GraNd: examples with the largest (``order: high``) per-example gradient norm under theta_0.

    ``batch_size``: examples per vmap call; it holds that many gradient copies of the trainable weights.
    """

    option_ranges = {"batch_size": Range(low=1, whole=True, example="4")}

    def __init__(self, *args, batch_size: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_size = batch_size

    def score(self, pool: Pool) -> np.ndarray:
        return per_example_grad_norms(pool.model, pool.encoded, pool.pad_id, self.batch_size, pool.precision)


class ModerateSelector(Selector):
    """Moderate coreset: examples whose embedding distance to the centroid is nearest the median distance."""

    def rank(self, pool: Pool) -> list[int]:
        emb = mean_hidden_states(pool.model, pool.encoded, pool.pad_id, pool.batch_size, pool.precision)
        order, distance = moderate_rank(emb)
        self.scores = distance.tolist()
        return order


def moderate_rank(embeddings: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Ids by |distance to the centroid - median distance| (closest first), and the distances."""
    distance = np.linalg.norm(embeddings - embeddings.mean(axis=0), axis=1)
    return rank_by(np.abs(distance - np.median(distance)), descending=False), distance


class KeywordSelector(Selector):
    """Keyword-rich examples of the forget set, or keyword-only forget samples built from them."""

    option_ranges = {"top_k": Range(low=1, whole=True, example="50")}

    def __init__(self, *args, mode: str = "rich", top_k: int = 50, **kwargs):
        super().__init__(*args, **kwargs)
        check_choice("mode", mode, ("rich", "keyword_only"), "a keyword mode")
        self.mode, self.top_k = mode, top_k
        self.keywords: list[str] = []
        self.weights: list[dict[str, float]] = []

    def rank(self, pool: Pool) -> list[int]:
        self.weights = tfidf([words(row_text(r)) for r in pool.rows])
        self.keywords = top_keywords(self.weights, self.top_k)
        scores = np.array([sum(doc.get(w, 0.0) for w in self.keywords) for doc in self.weights])
        self.scores = scores.tolist()
        return rank_by(scores, descending=True)

    def transform(self, rows: list[dict], ids: list[int]) -> list[dict] | None:
        if self.mode != "keyword_only":
            return None
        keep = set(self.keywords)
        out = []
        for i in ids:
            row = rows[i]
            field = "text" if "text" in row else "answer"
            tokens = [w for w in words(row[field]) if w in keep]
            if not tokens:  # no global keyword in it: its own three strongest words
                own = sorted(Counter(words(row[field])).items(), key=lambda kv: (-self.weights[i].get(kv[0], 0), kv[0]))
                tokens = [w for w, _ in own[:3]] or words(row_text(row))[:3]
            out.append({**row, field: " ".join(tokens)})
        return out

    def describe(self) -> dict:
        return {"mode": self.mode, "keywords": self.keywords}
