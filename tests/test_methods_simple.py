"""SimNPO, WGA, UNDIAL and IdkDPO: each loss against the formula written out by hand, then one step on a tiny Llama."""

from __future__ import annotations

import math

import pytest
import torch

from runner.components import build
from runner.data.qa import IGNORE, collate_qa
from runner.methods.base import Method, UnlearnData
from runner.methods.idkdpo import idkdpo_forget_loss, read_refusals, stack_batches
from runner.methods.simnpo import simnpo_forget_loss
from runner.methods.undial import undial_loss, undial_target_logits
from runner.methods.wga import wga_forget_loss, wga_weights
from runner.scoring import sequence_logprob
from runner.training import collate_pairs
from tests.conftest import compose_cfg, random_llama


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# --- SimNPO ------------------------------------------------------------------


def test_simnpo_forget_loss_matches_formula():
    # two sequences: log pi = -3 over |y| = 2 tokens, log pi = -10 over |y| = 4 tokens
    logp, lengths, beta, gamma_m = [-3.0, -10.0], [2, 4], 2.5, 0.5
    # arguments of the sigmoid: -(2.5/2)(-3) - 0.5 = 3.25 and -(2.5/4)(-10) - 0.5 = 5.75
    expected = -(2 / beta) * (log_sigmoid(3.25) + log_sigmoid(5.75)) / 2
    assert expected == pytest.approx(0.4 * (math.log1p(math.exp(-3.25)) + math.log1p(math.exp(-5.75))))
    got = simnpo_forget_loss(f64(logp), torch.tensor(lengths), beta, gamma_m)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_simnpo_normalises_by_length():
    # the same per-token log-prob gives the same loss whatever the length; the sum alone would not
    short = simnpo_forget_loss(f64([-2.0]), torch.tensor([2]), 2.5, 0.0)
    long = simnpo_forget_loss(f64([-8.0]), torch.tensor([8]), 2.5, 0.0)
    assert short.item() == pytest.approx(long.item(), rel=1e-12)
    assert short.item() == pytest.approx(-(2 / 2.5) * log_sigmoid(2.5), rel=1e-12)


# --- WGA ---------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_wga_loss_and_detached_weights(beta):
    probs = [0.5, 0.25, 0.8]
    logp = f64([math.log(p) for p in probs]).requires_grad_()
    weights = [p**beta for p in probs]
    expected = sum(w * math.log(p) for w, p in zip(weights, probs, strict=True)) / 3
    assert wga_weights(logp, beta).tolist() == pytest.approx(weights, rel=1e-12)
    loss = wga_forget_loss(logp, beta)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    # the weights carry no gradient: d loss / d log p_t = w_t / N, not w_t (1 + beta log p_t) / N
    assert logp.grad.tolist() == pytest.approx([w / 3 for w in weights], rel=1e-12)


# --- UNDIAL ------------------------------------------------------------------


def test_undial_target_distribution_by_hand():
    # reference logits [1, 2, 0] on a 3-token vocabulary, gold token 1, beta 10 -> [1, -8, 0]
    ref = f64([[1.0, 2.0, 0.0]])
    shifted = undial_target_logits(ref, torch.tensor([1]), 10.0)
    assert shifted.tolist() == [[1.0, -8.0, 0.0]]
    z = math.e + math.exp(-8) + 1
    target = [math.e / z, math.exp(-8) / z, 1 / z]
    # student uniform: KL(target || uniform) = sum_i t_i ln t_i + ln 3
    expected = sum(t * math.log(t) for t in target) + math.log(3)
    got = undial_loss(f64([[0.0, 0.0, 0.0]]), ref, torch.tensor([1]), 10.0)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_undial_loss_is_mean_over_tokens_and_zero_at_the_shifted_teacher():
    ref = f64([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]])
    targets = torch.tensor([1, 2])
    # the student already equals the shifted teacher (up to a per-row constant, which softmax ignores)
    student = f64([[1.0 + 4, -8.0 + 4, 0.0 + 4], [0.5, -1.0, 3.0 - 10]])
    assert undial_loss(student, ref, targets, 10.0).item() == pytest.approx(0.0, abs=1e-12)
    # each row on its own, then the mean of the two
    uniform = f64([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    rows = [undial_loss(uniform[i : i + 1], ref[i : i + 1], targets[i : i + 1], 10.0).item() for i in range(2)]
    assert undial_loss(uniform, ref, targets, 10.0).item() == pytest.approx(sum(rows) / 2, rel=1e-12)


def test_undial_loss_has_no_gradient_into_the_teacher():
    ref = f64([[1.0, 2.0, 0.0]]).requires_grad_()
    student = f64([[0.3, 0.1, -0.2]]).requires_grad_()
    undial_loss(student, ref, torch.tensor([0]), 10.0).backward()
    assert ref.grad is None
    assert student.grad.abs().sum() > 0


# --- IdkDPO ------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_idkdpo_at_reference_is_2_ln2_over_beta(beta):
    logp_idk, logp = f64([-5.0, -9.5]), f64([-20.0, -12.0])
    got = idkdpo_forget_loss(logp_idk, logp_idk.clone(), logp, logp.clone(), beta)
    assert got.item() == pytest.approx(2 / beta * math.log(2), rel=1e-12)


def test_idkdpo_matches_formula():
    logp_idk, logp_idk_ref = [-5.0, -8.0], [-6.0, -7.0]
    logp, logp_ref = [-20.0, -12.0], [-18.0, -15.0]
    # margins: (1) - (-2) = 3 and (-1) - (3) = -4; beta = 0.1
    expected = -(2 / 0.1) * (log_sigmoid(0.3) + log_sigmoid(-0.4)) / 2
    assert expected == pytest.approx(10 * (math.log1p(math.exp(-0.3)) + math.log1p(math.exp(0.4))))
    got = idkdpo_forget_loss(f64(logp_idk), f64(logp_idk_ref), f64(logp), f64(logp_ref), 0.1)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_stack_batches_pads_to_the_wider():
    a = collate_qa([{"input_ids": [1, 5, 6], "labels": [IGNORE, 5, 6]}], 0)
    b = collate_qa([{"input_ids": [1, 7, 8, 9, 2], "labels": [IGNORE, IGNORE, 8, 9, 2]}], 0)
    both = stack_batches(a, b, 0)
    assert both["input_ids"].tolist() == [[1, 5, 6, 0, 0], [1, 7, 8, 9, 2]]
    assert both["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert both["labels"].tolist() == [[IGNORE, 5, 6, IGNORE, IGNORE], [IGNORE, IGNORE, 8, 9, 2]]


def test_refusals_are_plain_lines():
    refusals = read_refusals()
    assert len(refusals) > 10 and all(r and not r.startswith(("{", '"')) for r in refusals)


# --- one step of each method on a tiny Llama -----------------------------------

PAD, BOS, EOS = 0, 1, 2
FORGET_ROWS = [
    {"question": "Who wrote Alpha?", "answer": "Basil Hart"},
    {"question": "Where was Cyra born?", "answer": "Oslo"},
    {"question": "What genre?", "answer": "Crime fiction novels"},
    {"question": "Awards won?", "answer": "None"},
]
RETAIN_ROWS = [
    {"question": "Who is Dana?", "answer": "A poet"},
    {"question": "Where does Eli live?", "answer": "In Lima, Peru"},
    {"question": "Fay's job?", "answer": "Chemist"},
]


def toy_encode(rows: list[dict]) -> list[dict]:
    """Characters to ids 3..49; prompt masked out of the labels, EOS closes the answer."""

    def ids(text: str, n: int) -> list[int]:
        return [3 + ord(c) % 47 for c in text[:n]]

    out = []
    for i, r in enumerate(rows):
        prompt = [BOS] + ids(r["question"], 8)
        answer = ids(r["answer"], 6) + [EOS]
        out.append({"input_ids": prompt + answer, "labels": [IGNORE] * len(prompt) + answer, "index": i})
    return out


@pytest.fixture(scope="module")
def tiny_llama():
    return random_llama(max_position_embeddings=64, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS).train()


def make_data(model) -> UnlearnData:
    return UnlearnData(
        model=model,
        forget=toy_encode(FORGET_ROWS),
        retain=toy_encode(RETAIN_ROWS),
        encode=toy_encode,
        pad_id=PAD,
        eval_batch_size=2,
        precision="fp32",
        seed=3,
        forget_rows=FORGET_ROWS,
    )


def make_batch(data: UnlearnData, forget_ids=(3, 0, 2), retain_ids=(1, 2, 0)) -> dict:
    pairs = [{"forget": data.forget[f], "retain": data.retain[r]} for f, r in zip(forget_ids, retain_ids, strict=True)]
    return collate_pairs(data.pad_id)(pairs)


def make_method(name: str):
    return build(compose_cfg(f"method={name}").method, Method, "method")


@pytest.mark.parametrize(
    "name,terms",
    [
        ("simnpo", {"simnpo_forget", "retain_nll"}),
        ("wga", {"wga_forget", "retain_nll"}),
        ("undial", {"undial_kl"}),
        ("idkdpo", {"idkdpo_forget", "retain_nll"}),
    ],
)
def test_method_step_on_tiny_llama(tiny_llama, name, terms):
    method = make_method(name)
    data = make_data(tiny_llama)
    before = [p.detach().clone() for p in tiny_llama.parameters()]
    method.prepare(data)
    tiny_llama.zero_grad()
    loss, logged = method.loss(tiny_llama, make_batch(data))
    assert torch.isfinite(loss)
    assert set(logged) == terms and all(math.isfinite(v) for v in logged.values())
    loss.backward()
    grads = [p.grad for p in tiny_llama.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0
    assert tiny_llama.get_output_embeddings().weight.grad.abs().sum() > 0
    # no method leaves the weights changed (UNDIAL swaps theta_0 in and back out)
    assert all(torch.equal(p, b) for p, b in zip(tiny_llama.parameters(), before, strict=True))
    tiny_llama.zero_grad()


def test_yaml_defaults():
    assert dict(compose_cfg("method=simnpo").method) == {
        "_target_": "runner.methods.simnpo.SimNPO",
        "beta": 2.5,
        "gamma_m": 0.0,
        "gamma": 0.125,
        "alpha": 1.0,
    }
    assert dict(compose_cfg("method=wga").method) == {"_target_": "runner.methods.wga.WGA", "beta": 1.0, "alpha": 1.0}
    undial = compose_cfg("method=undial").method
    assert undial.beta == 10.0 and undial.alpha == 0.0
    idkdpo = compose_cfg("method=idkdpo").method
    assert idkdpo.beta == 0.1 and idkdpo.alpha == 1.0


def test_simnpo_lengths_count_answer_tokens_with_eos(tiny_llama):
    method = make_method("simnpo")
    data = make_data(tiny_llama)
    batch = make_batch(data)
    with torch.no_grad():
        got = method.forget_term(tiny_llama, batch)
        logp, _ = sequence_logprob(tiny_llama, batch["forget"])
    lengths = [len(FORGET_ROWS[i]["answer"][:6]) + 1 for i in (3, 0, 2)]  # answer characters + EOS
    assert lengths == [5, 7, 7]
    expected = simnpo_forget_loss(logp, torch.tensor(lengths), method.beta, method.gamma_m)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_undial_skips_the_retain_batch_when_alpha_is_zero(tiny_llama):
    method = make_method("undial")
    data = make_data(tiny_llama)
    method.prepare(data)
    batch = make_batch(data)
    del batch["retain"]
    loss, _ = method.loss(tiny_llama, batch)
    assert torch.isfinite(loss)


def test_idkdpo_pairs_refusals_by_seed_and_index(tiny_llama):
    data = make_data(tiny_llama)
    first, second = make_method("idkdpo"), make_method("idkdpo")
    first.prepare(data)
    second.prepare(data)
    # the answer of each pair is one of the refusals (as toy_encode sees it)
    refusal_answers = {tuple(toy_encode([{"question": "", "answer": r}])[0]["input_ids"][1:]) for r in read_refusals()}
    assert sorted(first.idk_examples) == [0, 1, 2, 3]
    for i, example in first.idk_examples.items():
        assert example["index"] == i
        assert example["input_ids"] == second.idk_examples[i]["input_ids"]  # same seed, same refusals
        n_prompt = example["labels"].count(IGNORE)
        # the refusal follows the forget example's own question
        assert example["input_ids"][:n_prompt] == toy_encode([FORGET_ROWS[i]])[0]["input_ids"][:n_prompt]
        assert tuple(example["input_ids"][n_prompt:]) in refusal_answers
    # at theta_0 (nothing trained yet) the forget term is (2/beta) ln 2: the reference log-probs line up
    with torch.no_grad():
        got = first.forget_term(tiny_llama, make_batch(data, forget_ids=(2, 3, 1)))
    assert got.item() == pytest.approx(2 / first.beta * math.log(2), rel=1e-5)


def test_idkdpo_needs_forget_rows(tiny_llama):
    data = make_data(tiny_llama)
    data.forget_rows = None
    with pytest.raises(ValueError, match="forget_rows"):
        make_method("idkdpo").prepare(data)
