"""TF-IDF over the forget set's words: which words are its keywords, and how much of them each row holds."""

from __future__ import annotations

import math
import re
from collections import Counter

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
