"""Forget-set coresets: unlearn with a chosen fraction of the forget set (the coreset effect, arXiv 2504.10185).

A selector picks exactly ceil(ratio * N) distinct example ids from the full
forget set of N rows. Scoring selectors make one batched pass over the forget
set with the model before unlearning (theta_0) and keep the examples whose
score ranks first:

- ``random``: a seeded uniform sample;
- ``loss``: mean answer-token NLL under theta_0, highest (``order: high``) or lowest first;
- ``gradnorm`` (GraNd): the norm of the per-example gradient of that loss over the
  trainable parameters (``torch.func`` vmap of grad, ``batch_size`` examples at a time);
- ``moderate``: the mean last-layer hidden state of each example; keep those whose
  distance to the centroid is closest to the median distance;
- ``keyword``: the forget set's top TF-IDF words; ``mode: rich`` keeps the examples
  whose TF-IDF mass on them is largest, ``mode: keyword_only`` also replaces each kept
  example's text (the answer of a QA row) by just the keywords it contains.

The coreset paper compares runs at equal optimisation steps, so with
``match_steps`` the unlearning trainer takes as many steps as the full-set run
would: ceil(N / (batch * grad_accum * world_size)) * epochs.

Rows are QA rows ``{"question", "answer"}`` (TOFU, MUSE knowmem) or text rows
``{"text"}`` (WMDP, MUSE raw); the model only ever sees them through the
benchmark's ``encode``.
"""

from __future__ import annotations

import abc
import logging
import math
import random
import re
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from runner import distributed
from runner.data.qa import IGNORE, collate_qa
from runner.errors import ConfigError
from runner.scoring import autocast, score_sequences, unwrap

log = logging.getLogger(__name__)


def coreset_size(ratio: float, n: int) -> int:
    """ceil(ratio * n), robust to float noise (0.05 * 40 is 2.0000000000000004, which must give 2)."""
    return max(1, min(n, math.ceil(round(ratio * n, 9))))


@dataclass
class Pool:
    """What a selector may look at: the full forget set and the model before unlearning."""

    rows: list[dict]
    encoded: list[dict]  # encode(rows), same order
    model: torch.nn.Module
    pad_id: int
    batch_size: int
    precision: str


class Selector(abc.ABC):
    """Base: validates the shared parameters; subclasses implement ``rank`` (or override ``select``)."""

    def __init__(self, name: str, ratio: float, seed: int = 0, match_steps: bool = True):
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ConfigError(
                "coreset.ratio",
                f"must be in (0, 1], got {ratio!r}",
                "give the fraction of the forget set to keep, e.g. coreset.ratio=0.05 (1.0 keeps all of it)",
            )
        self.name, self.ratio, self.seed, self.match_steps = name, float(ratio), int(seed), bool(match_steps)
        self.scores: list[float] | None = None  # per-example scores of a scoring selector, for the record

    def select(self, pool: Pool) -> list[int]:
        """Exactly ``coreset_size(ratio, N)`` distinct ids into ``pool.rows``, ascending."""
        k = coreset_size(self.ratio, len(pool.rows))
        return sorted(self.rank(pool)[:k])

    @abc.abstractmethod
    def rank(self, pool: Pool) -> list[int]:
        """Every id into ``pool.rows``, best first (the first ``k`` form the coreset)."""

    def transform(self, rows: list[dict], ids: list[int]) -> list[dict] | None:
        """New rows to train on in place of the selected ones (keyword-only samples); None keeps them."""
        return None

    def describe(self) -> dict:
        return {}


def _rank_by(scores: np.ndarray, descending: bool) -> list[int]:
    """Ids by score, ties broken by id, so a ranking is reproducible."""
    keys = -scores if descending else scores
    return [int(i) for i in np.lexsort((np.arange(len(scores)), keys))]


class RandomSelector(Selector):
    def rank(self, pool: Pool) -> list[int]:
        ids = list(range(len(pool.rows)))
        random.Random(self.seed).shuffle(ids)
        return ids


class LossSelector(Selector):
    """Mean answer-token NLL under theta_0; ``order: high`` keeps the hardest examples first."""

    def __init__(self, name: str, ratio: float, seed: int = 0, match_steps: bool = True, order: str = "high"):
        super().__init__(name, ratio, seed, match_steps)
        if order not in ("high", "low"):
            raise ConfigError("coreset.order", f"`{order}` is not an order", "use high or low")
        self.order = order

    def rank(self, pool: Pool) -> list[int]:
        sums = score_sequences(pool.model, pool.encoded, pool.pad_id, pool.batch_size, pool.precision, "coreset loss")
        scores = sums[:, 0] / np.maximum(sums[:, 1], 1)
        self.scores = scores.tolist()
        return _rank_by(scores, descending=self.order == "high")

    def describe(self) -> dict:
        return {"order": self.order}


def per_example_grad_norms(
    model: torch.nn.Module, encoded: list[dict], pad_id: int, batch_size: int, precision: str
) -> np.ndarray:
    """||grad_theta l_i(theta)|| over the trainable parameters, l_i the mean answer NLL of example i.

    ``vmap(grad(...))`` gives every example of a batch its own gradient in one call.
    Right padding needs no attention mask under a causal mask (no real token attends
    to a later pad), which keeps the mask construction's data-dependent branches out of
    vmap; the math attention kernel has a batching rule where the fused ones have none.
    Memory: ``batch_size`` gradient copies of the trainable parameters.
    """
    m = unwrap(model)
    device = next(m.parameters()).device
    trainable = {n: p.detach() for n, p in m.named_parameters() if p.requires_grad}
    if not trainable:
        raise ConfigError("model.trainable_layers", "no parameter is trainable", "leave some layers trainable")

    def example_loss(params, input_ids, labels):
        logits = functional_call(m, params, args=(), kwargs={"input_ids": input_ids[None], "use_cache": False}).logits[
            0, :-1
        ]
        targets = labels[1:]
        scored = targets != IGNORE
        nll = torch.nn.functional.cross_entropy(logits.float(), targets.clamp(min=0), reduction="none")
        return (nll * scored).sum() / scored.sum().clamp(min=1)

    per_batch = vmap(grad(example_loss), in_dims=(None, 0, 0))
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    norms = np.zeros(len(encoded), dtype=np.float64)
    was_training = m.training
    m.eval()  # no dropout: the gradient of the model as it is
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="coreset gradnorm", unit="batch", leave=False):
            idx = order[start : start + batch_size]
            batch = collate_qa([encoded[i] for i in idx], pad_id)
            with sdpa_kernel(SDPBackend.MATH), autocast(precision, device):
                grads = per_batch(trainable, batch["input_ids"].to(device), batch["labels"].to(device))
            squared = sum(g.float().pow(2).flatten(1).sum(1) for g in grads.values())
            norms[idx] = squared.sqrt().double().cpu().numpy()
            del grads
    finally:
        m.train(was_training)
    return norms


class GradNormSelector(Selector):
    """GraNd: examples with the largest (``order: high``) per-example gradient norm under theta_0."""

    def __init__(
        self,
        name: str,
        ratio: float,
        seed: int = 0,
        match_steps: bool = True,
        order: str = "high",
        batch_size: int = 4,
    ):
        super().__init__(name, ratio, seed, match_steps)
        if order not in ("high", "low"):
            raise ConfigError("coreset.order", f"`{order}` is not an order", "use high or low")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError("coreset.batch_size", f"must be a positive count, got {batch_size!r}", "e.g. 4")
        self.order, self.batch_size = order, batch_size

    def rank(self, pool: Pool) -> list[int]:
        scores = per_example_grad_norms(pool.model, pool.encoded, pool.pad_id, self.batch_size, pool.precision)
        self.scores = scores.tolist()
        return _rank_by(scores, descending=self.order == "high")

    def describe(self) -> dict:
        return {"order": self.order}


@torch.inference_mode()
def mean_hidden_states(model, encoded: list[dict], pad_id: int, batch_size: int, precision: str) -> np.ndarray:
    """(N, hidden) mean of the last layer's hidden states over each example's tokens."""
    m = unwrap(model)
    device = next(m.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    out = None
    for start in tqdm(range(0, len(order), batch_size), desc="coreset embed", unit="batch", leave=False):
        idx = order[start : start + batch_size]
        batch = collate_qa([encoded[i] for i in idx], pad_id)
        mask = batch["attention_mask"].to(device)
        with autocast(precision, device):
            hidden = m.base_model(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state
        mean = (hidden.float() * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        if out is None:
            out = np.zeros((len(encoded), mean.shape[1]), dtype=np.float64)
        out[idx] = mean.double().cpu().numpy()
    return out


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
    return _rank_by(np.abs(distance - np.median(distance)), descending=False), distance


# ---- keywords ----------------------------------------------------------------------------------

WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]*[A-Za-z0-9]|[A-Za-z]")
# common English function words: never keywords
_STOPWORD_TEXT = """a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having he her here
hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves also one two many much may might must shall us"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def row_text(row: dict) -> str:
    """All the text of a forget row: question and answer of a QA row, or the text of a corpus row."""
    if "text" in row:
        return row["text"]
    return f"{row['question']} {row['answer']}"


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text) if w.lower() not in STOPWORDS]


def tfidf(docs: list[list[str]]) -> list[dict[str, float]]:
    """Per document, tf-idf of each word: (count / doc length) * (ln((1 + N) / (1 + df)) + 1), the smoothed idf."""
    n = len(docs)
    df = Counter(w for doc in docs for w in set(doc))
    idf = {w: math.log((1 + n) / (1 + c)) + 1 for w, c in df.items()}
    weights = []
    for doc in docs:
        counts = Counter(doc)
        weights.append({w: c / len(doc) * idf[w] for w, c in counts.items()} if doc else {})
    return weights


def top_keywords(weights: list[dict[str, float]], k: int) -> list[str]:
    """The ``k`` words with the largest tf-idf summed over the documents (ties: alphabetical)."""
    total: Counter = Counter()
    for doc in weights:
        total.update(doc)
    return [w for w, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


class KeywordSelector(Selector):
    """Keyword-rich examples of the forget set, or keyword-only forget samples built from them."""

    def __init__(
        self,
        name: str,
        ratio: float,
        seed: int = 0,
        match_steps: bool = True,
        mode: str = "rich",
        top_k: int = 50,
    ):
        super().__init__(name, ratio, seed, match_steps)
        if mode not in ("rich", "keyword_only"):
            raise ConfigError("coreset.mode", f"`{mode}` is not a keyword mode", "use rich or keyword_only")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError("coreset.top_k", f"must be a positive count, got {top_k!r}", "e.g. coreset.top_k=50")
        self.mode, self.top_k = mode, top_k
        self.keywords: list[str] = []
        self.weights: list[dict[str, float]] = []

    def rank(self, pool: Pool) -> list[int]:
        self.weights = tfidf([words(row_text(r)) for r in pool.rows])
        self.keywords = top_keywords(self.weights, self.top_k)
        scores = np.array([sum(doc.get(w, 0.0) for w in self.keywords) for doc in self.weights])
        self.scores = scores.tolist()
        return _rank_by(scores, descending=True)

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


# ---- the stage ---------------------------------------------------------------------------------


def build_selector(coreset_cfg: DictConfig) -> Selector:
    """The selector named by ``coreset._target_``, built from the other keys; its constructor checks them.

    (``get_class`` rather than ``instantiate``: a ConfigError from the constructor reaches the user unwrapped.)
    """
    if "_target_" not in coreset_cfg:
        raise ConfigError(
            "coreset._target_",
            f"coreset `{coreset_cfg.get('name')}` has no _target_",
            "choose a selector: coreset=random|loss|gradnorm|moderate|keyword",
        )
    kwargs = OmegaConf.to_container(coreset_cfg, resolve=True)
    cls = get_class(kwargs.pop("_target_"))
    try:
        return cls(**kwargs)
    except TypeError as exc:  # an unknown or missing key
        raise ConfigError("coreset", str(exc), f"see conf/coreset/{coreset_cfg.get('name')}.yaml for the keys") from exc


def check_config(cfg: DictConfig) -> None:
    """At config validation, before any training: coreset=none keeps the whole set; a selector checks its keys."""
    if cfg.coreset.name == "none":
        if cfg.coreset.ratio != 1.0:
            raise ConfigError(
                "coreset.ratio",
                f"coreset=none unlearns with the whole forget set, so ratio {cfg.coreset.ratio} would be ignored",
                "choose a selector (coreset=random|loss|gradnorm|moderate|keyword) or leave coreset.ratio at 1.0",
            )
        return
    build_selector(cfg.coreset)


def full_set_steps(n_full: int, train_cfg, world_size: int) -> int:
    """Optimisation steps of an unlearning run over ``n_full`` examples: ceil(N / (b * accum * world)) * epochs."""
    if train_cfg.get("max_steps"):
        return int(train_cfg.max_steps)
    per_step = train_cfg.batch_size * train_cfg.grad_accum * world_size
    return max(1, math.ceil(n_full / per_step)) * int(train_cfg.epochs)


@dataclass
class Coreset:
    rows: list[dict]  # the forget rows to unlearn with
    encoded: list[dict]  # encode(rows), each example's "index" its id in the full forget set
    train_cfg: DictConfig  # the unlearning trainer's settings (max_steps set when steps are matched)
    record: dict  # results.json's `coreset`


def select_coreset(cfg: DictConfig, model, rows: list[dict], encoded: list[dict], encode, pad_id: int) -> Coreset:
    """Select by ``cfg.coreset`` from the full forget set (``rows``; ``encoded`` = ``encode(rows)``).

    ``model`` holds theta_0, the model unlearning starts from. Batches of the scoring
    pass are ``cfg.eval.batch_size`` long; the returned trainer settings are ``cfg.unlearn``
    with ``max_steps`` set where steps are matched to the full-set run.
    """
    coreset_cfg, train_cfg = cfg.coreset, cfg.unlearn
    selector = build_selector(coreset_cfg)
    start = time.perf_counter()
    ids = selector.select(Pool(rows, encoded, model, pad_id, cfg.eval.batch_size, cfg.precision))
    # every rank must unlearn with the same examples: rank 0's ranking wins over kernel-level noise
    ids = distributed.from_main(ids)
    seconds = time.perf_counter() - start
    if len(ids) != len(set(ids)) or len(ids) != coreset_size(selector.ratio, len(rows)):
        raise RuntimeError(f"coreset `{selector.name}` selected {len(ids)} ids, not {len(rows)} * {selector.ratio}")

    new_rows = selector.transform(rows, ids)
    if new_rows is None:
        chosen_rows, chosen = [rows[i] for i in ids], [encoded[i] for i in ids]
    else:
        # the rewritten rows keep the ids of the examples they came from
        chosen_rows = new_rows
        chosen = [{**e, "index": i} for e, i in zip(encode(new_rows), ids, strict=True)]

    world = distributed.world_size()
    full_steps = full_set_steps(len(rows), train_cfg, world)
    run_cfg = train_cfg
    if selector.match_steps and not train_cfg.get("max_steps"):
        run_cfg = OmegaConf.merge(train_cfg, {"max_steps": full_steps})
    steps = full_set_steps(len(ids), run_cfg, world)
    log.info(
        "coreset %s: %d of %d forget examples in %.2fs; unlearning takes %d steps (full set: %d)",
        selector.name,
        len(ids),
        len(rows),
        seconds,
        steps,
        full_steps,
    )
    record = {
        "name": selector.name,
        "ratio": selector.ratio,
        "seed": selector.seed,
        "match_steps": selector.match_steps,
        "selected": ids,
        "n_selected": len(ids),
        "n_total": len(rows),
        "seconds": round(seconds, 3),
        "unlearn_steps": steps,
        "full_set_steps": full_steps,
        **selector.describe(),
    }
    if selector.scores is not None:
        record["scores"] = [round(float(s), 6) for s in selector.scores]
    if new_rows is not None:
        record["rows"] = new_rows
    return Coreset(chosen_rows, chosen, run_cfg, record)
