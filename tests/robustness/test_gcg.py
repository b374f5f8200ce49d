"""GCG: the candidate loss is the target's cross-entropy, candidates change one position to a top-k token, and a
few steps lower the target loss of a question's gold answer on the tiny model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from runner.errors import ConfigError
from runner.robustness.gcg import GcgAttack
from runner.robustness.gcg_step import GcgRow, candidate_losses, optimise, sample_candidates, suffix_gradient
from tests.robustness.conftest import ROWS, probe


def _row(ctx, attack: GcgAttack, i: int = 0) -> GcgRow:
    return attack.gcg_rows(ctx, [ROWS[i]])[0]


def test_candidate_loss_is_the_mean_target_cross_entropy(tiny):
    ctx = probe(tiny)
    row = _row(ctx, GcgAttack(target_tokens=5))
    suffix = torch.tensor([[7, 8, 9], [10, 11, 12]])
    losses = candidate_losses(ctx.model, row, suffix, batch_size=1, precision="fp32")
    for s, loss in zip(suffix.tolist(), losses, strict=True):
        ids = torch.tensor([row.before + s + row.after + row.target])
        labels = torch.tensor([[-100] * (ids.shape[1] - len(row.target)) + row.target])
        with torch.no_grad():
            expected = ctx.model(input_ids=ids, labels=labels).loss  # transformers' own shifted cross-entropy
        torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    assert row.target == [t for t in row.target] and len(row.target) == 5


def test_the_one_hot_gradient_is_the_loss_gradient_through_the_embedding(tiny):
    """Row p of the gradient dotted with (e_v - e_current) is the first-order change of swapping token v in."""
    ctx = probe(tiny)
    row = _row(ctx, GcgAttack(target_tokens=4))
    suffix = torch.tensor([20, 21, 22])
    grad = suffix_gradient(ctx.model, [row], suffix, "fp32")
    weight = ctx.model.get_input_embeddings().weight
    embeds = weight[suffix].detach().clone().requires_grad_(True)
    embedding = ctx.model.get_input_embeddings()
    ids = lambda t: embedding(torch.tensor(t))  # noqa: E731
    full = torch.cat([ids(row.before), embeds, ids(row.after), ids(row.target)])
    logits = ctx.model(inputs_embeds=full[None]).logits[0]
    start = len(row.before) + 3 + len(row.after)
    F.cross_entropy(logits[start - 1 : -1], torch.tensor(row.target)).backward()
    torch.testing.assert_close(grad, embeds.grad @ weight.T.detach(), rtol=1e-4, atol=1e-6)  # chain rule via W


def test_each_candidate_swaps_one_position_for_a_top_k_token_never_a_special_one():
    suffix = torch.tensor([1, 2, 3, 4])
    grad = torch.randn(4, 30, generator=torch.Generator().manual_seed(0))
    banned = torch.tensor([0, 5])
    grad[:, banned] = -100.0  # the most promising tokens by gradient, yet special: never drawn
    candidates = sample_candidates(
        suffix, grad, top_k=3, width=50, banned=banned, generator=torch.Generator().manual_seed(1)
    )
    scores = -grad.clone()
    scores[:, banned] = -float("inf")
    top = scores.topk(3, dim=1).indices
    for cand in candidates:
        changed = (cand != suffix).nonzero().flatten().tolist()
        assert len(changed) <= 1  # one position (or none, if the drawn token is the current one)
        for p in changed:
            assert int(cand[p]) in top[p].tolist() and int(cand[p]) not in (0, 5)


def test_a_few_steps_lower_the_target_loss_of_its_own_question(tiny):
    ctx = probe(tiny)
    attack = GcgAttack(
        steps=[3], suffix_length=4, search_width=24, top_k=16, batch_size=24, target_tokens=6, filter_ids=False
    )
    row = _row(ctx, attack, 1)
    init = ctx.tokenizer("x", add_special_tokens=False)["input_ids"][:1] * 4
    params = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
    run = optimise(ctx, [row], init, attack, [3])
    assert run.losses[-1] < run.losses[0] and run.loss_at[3] == run.losses[-1]
    found = candidate_losses(ctx.model, row, torch.tensor([run.suffix_at[3]]), 1, "fp32")
    assert float(found[0]) == pytest.approx(run.loss_at[3], rel=1e-4)  # the recorded loss is the suffix's own
    assert all(torch.equal(params[n], p) for n, p in ctx.model.named_parameters())  # weights only read
    assert run.seconds_per_step > 0


def test_individual_mode_records_each_question_s_own_success(tiny):
    ctx = probe(tiny)
    attack = GcgAttack(steps=[1], suffix_length=3, search_width=8, top_k=4, target_tokens=4, questions=2)
    (point,) = attack.run(ctx)
    assert len(point["suffixes"]) == len(point["suffix_values"]) == 2
    assert point["value"] == pytest.approx(sum(point["suffix_values"]) / 2)  # the point's success is their mean
    assert all(0 <= v <= 1 for v in point["suffix_values"])


def test_universal_mode_trains_on_other_rows_and_scores_the_held_out_ones(tiny):
    ctx = probe(tiny)
    attack = GcgAttack(
        mode="universal",
        steps=[1],
        suffix_length=3,
        search_width=8,
        top_k=4,
        target_tokens=4,
        questions=2,
        train_questions=2,
    )
    assert attack.training_rows(ROWS) == ROWS[2:4] and attack.attacked_rows(ROWS) == ROWS[:2]
    (point,) = attack.run(ctx)
    assert point["mode"] == "universal" and len(point["suffixes"]) == 1 and 0 <= point["train_value"] <= 1
    assert point["suffix_values"] == [point["value"]]  # one suffix: its success is the held-out mean


def test_bad_gcg_input_is_refused_naming_the_key(tiny):
    ctx = probe(tiny)
    with pytest.raises(ConfigError, match=r"robustness_attack\.gcg\.init.*tokenises to nothing"):
        GcgAttack(init="").check_data(ROWS, ctx.tokenizer, ctx.fmt, 96)
    with pytest.raises(ConfigError, match=r"robustness_attack\.gcg\.train_questions"):
        GcgAttack(mode="universal", questions=3, train_questions=3).check_data(ROWS, ctx.tokenizer, ctx.fmt, 96)
    empty = [*ROWS[:1], {"question": "Who?", "answer": ""}]
    with pytest.raises(ConfigError, match=r"robustness_attack\.gcg\.target_tokens.*row 1.*tokenises to nothing"):
        GcgAttack(questions=2).check_data(empty, ctx.tokenizer, ctx.fmt, 96)
    with pytest.raises(ConfigError, match=r"robustness_attack\.gcg\.mode"):
        GcgAttack(mode="transfer")
