"""Forget-set coresets: unlearn with a chosen fraction of the forget set (the coreset effect, arXiv 2504.10185).

``base``: the selector contract; ``selectors``: the options of ``conf/coreset``; ``per_example``:
gradient norms and hidden states under theta_0; ``keywords``: TF-IDF; ``stage``: ``select_coreset``.
"""

from runner.coreset.base import Pool, Selector, coreset_size
from runner.coreset.keywords import tfidf, top_keywords
from runner.coreset.per_example import mean_hidden_states, per_example_grad_norms
from runner.coreset.selectors import (
    GradNormSelector,
    KeywordSelector,
    LossSelector,
    ModerateSelector,
    RandomSelector,
    moderate_rank,
)
from runner.coreset.stage import Coreset, check_config, full_set_steps, select_coreset

__all__ = [
    "Coreset",
    "GradNormSelector",
    "KeywordSelector",
    "LossSelector",
    "ModerateSelector",
    "Pool",
    "RandomSelector",
    "Selector",
    "check_config",
    "coreset_size",
    "full_set_steps",
    "mean_hidden_states",
    "moderate_rank",
    "per_example_grad_norms",
    "select_coreset",
    "tfidf",
    "top_keywords",
]
