"""TF-IDF by hand: the smoothed idf, the forget set's keywords, and the words of a row."""

from __future__ import annotations

import math

import pytest

from runner.coreset.keywords import row_text, tfidf, top_keywords, words


def test_tfidf_and_top_keywords_by_hand():
    docs = [["virus", "assay", "virus"], ["assay", "cell"], ["cell", "culture"]]
    w = tfidf(docs)
    idf = {t: math.log(4 / (1 + df)) + 1 for t, df in {"virus": 1, "assay": 2, "cell": 2, "culture": 1}.items()}
    assert w[0]["virus"] == pytest.approx(2 / 3 * idf["virus"])
    assert w[1]["cell"] == pytest.approx(1 / 2 * idf["cell"])
    # summed over documents: cell (1/2+1/2)*1.288 = 1.288, virus 2/3*1.693 = 1.129,
    # assay (1/3+1/2)*1.288 = 1.073, culture 1/2*1.693 = 0.847
    assert top_keywords(w, 2) == ["cell", "virus"]
    assert tfidf([[]]) == [{}]


def test_words_drop_stopwords_and_rows_give_all_their_text():
    assert words("The T-cell's assay, and 3 of them!") == ["t-cell's", "assay"]
    assert row_text({"question": "Who?", "answer": "Her."}) == "Who? Her."
    assert row_text({"text": "A passage."}) == "A passage."
