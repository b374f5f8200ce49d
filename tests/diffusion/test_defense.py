import pytest
import torch
from safetensors.torch import save_file

from runner.diffusion.defense import SubspaceDefense, orthonormal_basis
from runner.errors import ConfigError


def _defense(embeddings):
    d = SubspaceDefense(subspace="learn", learn={"_target_": "runner.diffusion.attacks.SubspaceAttack"})
    d.set_subspace(embeddings)
    return d


def test_the_projection_keeps_what_lies_outside_and_removes_what_lies_inside():
    gen = torch.Generator().manual_seed(0)
    attack = torch.randn(3, 16, generator=gen, dtype=torch.float64)
    defense = _defense(attack)
    basis = defense.basis
    assert basis.shape == (16, 3) and torch.allclose(basis.T @ basis, torch.eye(3, dtype=basis.dtype), atol=1e-10)
    # a vector orthogonal to the subspace is unchanged
    outside = torch.randn(5, 16, generator=gen, dtype=torch.float64)
    outside = outside - outside @ basis @ basis.T
    assert torch.allclose(defense.project(outside), outside, atol=1e-12)
    # a vector in the subspace (any mix of the attack embeddings) is removed
    inside = torch.randn(5, 3, generator=gen, dtype=torch.float64) @ attack
    assert defense.project(inside).abs().max() < 1e-10
    # a general vector keeps exactly its outside part; projecting twice changes nothing
    mixed = outside + inside
    assert torch.allclose(defense.project(mixed), outside, atol=1e-10)
    assert torch.allclose(defense.project(defense.project(mixed)), defense.project(mixed), atol=1e-12)


def test_the_basis_drops_dependent_directions():
    rows = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [2.0, -3.0, 0, 0]])
    assert orthonormal_basis(rows).shape == (4, 2)


def test_a_subspace_from_an_earlier_runs_tokens(tmp_path, attack_ctx):
    embeddings = attack_ctx.vocab[5:7].detach().clone()
    path = tmp_path / "attack_tokens.safetensors"
    save_file({"embeddings": embeddings.contiguous()}, str(path))
    defense = SubspaceDefense(subspace=str(path))
    defense.fit(attack_ctx)
    assert defense.describe() == {"source": str(path), "rank": 2}
    assert defense.project(embeddings).abs().max() < 1e-5


def test_a_missing_tokens_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        SubspaceDefense(subspace=str(tmp_path / "nothing.safetensors"))
    assert err.value.key == "defense.subspace"


def test_a_defence_learns_its_own_subspace_when_the_jobs_attack_differs(attack_ctx):
    from runner.diffusion.attacks import TokenEmbeddingAttack

    learn = {"_target_": "runner.diffusion.attacks.SubspaceAttack", "n_tokens": 2, "hidden": 4, "steps": 1}
    defense = SubspaceDefense(subspace="learn", learn=learn)
    baseline = TokenEmbeddingAttack(n_tokens=3, steps=1)
    defense.fit(attack_ctx, baseline.fit(attack_ctx), baseline)
    described = defense.describe()
    assert described["source"] == "learned by defense.learn" and described["rank"] == 2
    assert len(described["words"]) == 2 and described["training"]["steps"] == 1
    assert defense.project(defense.learned.embeddings).abs().max() < 1e-5
