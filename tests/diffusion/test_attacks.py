import pytest
import torch

from runner.components import build
from runner.diffusion.attacks import (
    Mixture,
    SubspaceAttack,
    TokenEmbeddingAttack,
    gram_schmidt,
    max_abs_cosine,
    random_tokens,
    special_ids,
)
from runner.diffusion.base import Attack
from runner.errors import ConfigError


def test_gram_schmidt_gives_orthogonal_rows_of_the_original_norms():
    rows = torch.randn(4, 10, generator=torch.Generator().manual_seed(0)) + 3.0  # strongly correlated rows
    assert max_abs_cosine(rows) > 0.5
    out = gram_schmidt(rows)
    assert max_abs_cosine(out) < 1e-6
    assert torch.allclose(out.norm(dim=1), rows.norm(dim=1), atol=1e-5)
    assert torch.allclose(out[0], rows[0])  # the first row is kept as it is


@pytest.fixture(scope="module")
def trained(attack_ctx):
    """One short training of a 4-token subspace attack (Gram-Schmidt orthogonality)."""
    attack = SubspaceAttack(n_tokens=4, hidden=8, steps=3, lr=1e-2, batch_size=2, top_words=5)
    return attack, attack.fit(attack_ctx)


def test_the_mixture_is_non_negative_and_its_words_are_real_vocabulary_entries(attack_ctx, trained):
    attack, result = trained
    alpha = attack.mixture.weights()
    assert (alpha >= 0).all() and (alpha.sum(1) > 0).all()
    special = special_ids(attack_ctx.tokenizer)
    assert (alpha[:, sorted(special)] == 0).all()  # bos / eos / pad never mix in
    vocab = attack_ctx.tokenizer.get_vocab()
    for words in result.words:
        assert 1 <= len(words) <= 5
        weights = [w["weight"] for w in words]
        assert all(w > 0 for w in weights) and weights == sorted(weights, reverse=True)
        for w in words:
            assert vocab[w["entry"]] == w["id"] and w["id"] not in special
            assert w["word"] == w["entry"].removesuffix("</w>")
    # each token's embedding is the normalised mixture of the vocabulary, then orthogonalised in order
    with torch.no_grad():
        mix = (alpha @ attack_ctx.vocab) / alpha.sum(1, keepdim=True)
    assert torch.allclose(result.embeddings, gram_schmidt(mix), atol=1e-5)
    assert len(result.training["loss_curve"]) == 3


def test_orthogonality_holds_after_training(attack_ctx, trained):
    _, result = trained
    assert result.embeddings.shape == (4, attack_ctx.vocab.shape[1])
    assert max_abs_cosine(result.embeddings) < 1e-4
    assert result.training["max_abs_cosine"] < 1e-4


def test_the_gram_penalty_makes_the_tokens_more_orthogonal(attack_ctx):
    start = Mixture(attack_ctx.vocab, 3, 8, 16, attack_ctx.seed)()  # what training starts from (same seed)
    trained = SubspaceAttack(
        n_tokens=3, hidden=8, steps=6, lr=1e-2, batch_size=2, orthogonality="gram", gram_weight=10.0
    ).fit(attack_ctx)
    assert trained.training["max_abs_cosine"] < max_abs_cosine(start.detach())


def test_the_baseline_snaps_to_vocabulary_words(attack_ctx):
    result = TokenEmbeddingAttack(n_tokens=2, steps=2, lr=1e-2, batch_size=2, discrete=True).fit(attack_ctx)
    for k, words in enumerate(result.words):
        assert torch.equal(result.embeddings[k], attack_ctx.vocab[words[0]["id"]].detach())
    free = TokenEmbeddingAttack(n_tokens=2, steps=2, lr=1e-1, batch_size=2, discrete=False).fit(attack_ctx)
    assert not any(torch.equal(free.embeddings[k], attack_ctx.vocab[w[0]["id"]]) for k, w in enumerate(free.words))


def test_random_tokens_are_seeded_vocabulary_rows_without_specials():
    vocab = torch.randn(20, 4)
    a, ids = random_tokens(vocab, 5, seed=3, exclude={0, 1})
    b, again = random_tokens(vocab, 5, seed=3, exclude={0, 1})
    assert ids == again and len(set(ids)) == 5 and not {0, 1} & set(ids)
    assert torch.equal(a, vocab[ids]) and torch.equal(a, b)


@pytest.mark.parametrize(
    "options,key",
    [
        ({"orthogonality": "qr"}, "attack.orthogonality"),
        ({"n_tokens": 0}, "attack.n_tokens"),
        ({"lr": -1}, "attack.lr"),
        ({"steps": 1.5}, "attack.steps"),
    ],
)
def test_bad_options_name_their_key(options, key):
    with pytest.raises(ConfigError) as err:  # the builder reads the attack's declared option ranges
        build({"_target_": "runner.diffusion.attacks.SubspaceAttack", **options}, Attack, "attack")
    assert err.value.key == key
