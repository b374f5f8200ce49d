"""Logits processors (runner/decoding/processors.py):
the wave, the reflection bias, budget forcing and token probabilities, by hand."""

from __future__ import annotations

import pytest
import torch

from runner.decoding.processors import (
    BudgetForcing,
    ProbabilityByPosition,
    ReflectionBias,
    TokenProbability,
    sampling_warpers,
    triangular_wave,
    wave_phase,
)
from runner.decoding.strategies import (
    CyclicReflex,
)

VOCAB = 12


WORDS = [3, 5]  # reflection token ids in the unit tests


END = 9  # a one-token end-of-thinking tag


@pytest.mark.parametrize(
    "t,shift,expected",
    [
        (0, 0.0, 0.0),
        (150, 0.0, 2.5),  # p = 1/8: 4 * 5 * 0.125
        (300, 0.0, 5.0),  # p = 1/4: the peak
        (450, 0.0, 2.5),  # p = 3/8: 5 - 20 * 0.125
        (600, 0.0, 0.0),  # p = 1/2
        (900, 0.0, -5.0),  # p = 3/4: the trough
        (1050, 0.0, -2.5),  # p = 7/8: -5 + 20 * 0.125
        (1200, 0.0, 0.0),  # a full period
        (1500, 0.0, 5.0),
        (0, 0.25, 5.0),  # shifted a quarter: starts at the peak
        (600, 0.25, -5.0),
    ],
)
def test_triangular_wave_by_hand(t, shift, expected):
    assert triangular_wave(t, 5.0, 1200, shift) == pytest.approx(expected)


def test_wave_phase_and_array_form():
    assert wave_phase(1300, 1200) == pytest.approx(100 / 1200)
    assert list(triangular_wave([0, 1, 2, 3, 4], 2.0, 4)) == pytest.approx([0.0, 2.0, 0.0, -2.0, 0.0])


def _steps(processor, rows: list[list[int]], prompt_len: int = 2):
    """Feed ``rows`` (the tokens each row generates) to ``processor`` one step at a time.

    Returns, per step t, the offset it added to every logit (rows x vocab), from zero logits.
    """
    ids = torch.zeros(len(rows), prompt_len, dtype=torch.long)
    offsets = []
    for t in range(len(rows[0])):
        scores = torch.zeros(len(rows), VOCAB)
        offsets.append(processor(ids, scores))
        ids = torch.cat([ids, torch.tensor([[r[t]] for r in rows])], dim=1)
    return offsets


def test_cyclic_bias_at_chosen_positions_per_row():
    amplitude, period = 4.0, 8  # delta(t) = 0, 2, 4, 2, 0, -2, -4, -2, 0, ...
    wave = CyclicReflex(amplitude=amplitude, period=period, window=[0, 100], words=["x"])
    proc = ReflectionBias(WORDS, wave.offset, (0, 100), [END])
    # row 0 never closes its thinking, row 1 closes it at t=2 (its tag is seen from t=3), row 2 at t=5
    rows = [[1] * 8, [1, 1, END, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, END, 1, 1]]
    expected_delta = [0, 2, 4, 2, 0, -2, -4, -2]
    offsets = _steps(proc, rows)
    for t, out in enumerate(offsets):
        for row, done_at in enumerate([None, 2, 5]):
            want = expected_delta[t] if done_at is None or t <= done_at else 0.0
            assert out[row, WORDS].tolist() == pytest.approx([want, want]), (t, row)
            others = [i for i in range(VOCAB) if i not in WORDS]
            assert out[row, others].abs().sum() == 0


def test_window_limits_the_positions():
    proc = ReflectionBias(WORDS, lambda t: 1.5, (2, 5))
    offsets = _steps(proc, [[1] * 7])
    assert [float(o[0, WORDS[0]]) for o in offsets] == [0, 0, 1.5, 1.5, 1.5, 0, 0]


def test_multi_token_tag_stops_the_bias_after_its_last_token():
    proc = ReflectionBias(WORDS, lambda t: -3.0, (0, 50), [7, 8])
    offsets = _steps(proc, [[7, 1, 7, 8, 1, 1], [1] * 6])
    assert [float(o[0, WORDS[1]]) for o in offsets] == [-3, -3, -3, -3, 0, 0]  # tag complete at t=3
    assert [float(o[1, WORDS[1]]) for o in offsets] == [-3] * 6


def test_processor_serves_one_generate_call():
    proc = ReflectionBias(WORDS, lambda t: 1.0, (0, 10))
    proc(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, VOCAB))
    with pytest.raises(RuntimeError, match="one generate call"):
        proc(torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, VOCAB))


def _scores(top: list[int]) -> torch.Tensor:
    """Rows whose top token is ``top[row]`` (logit 5, the rest 0)."""
    s = torch.zeros(len(top), VOCAB)
    for row, tok in enumerate(top):
        s[row, tok] = 5.0
    return s


def test_budget_forcing_greedy_by_hand():
    wait = [4, 6]  # a two-token "Wait"
    proc = BudgetForcing(END, wait, min_thinking=4, max_thinking=7, max_waits=1, do_sample=False)
    ids = torch.zeros(3, 2, dtype=torch.long)
    # t=0: row 0 would stop -> forced "Wait" (first token); row 1 would not -> the tag is suppressed;
    # row 2 would stop too -> forced "Wait"
    out = proc(ids, _scores([END, 2, END]))
    assert out[0].argmax() == 4 and torch.isinf(out[0]).sum() == VOCAB - 1
    assert out[1, END] == float("-inf") and out[1].argmax() == 2
    assert out[2].argmax() == 4
    assert proc.waits.tolist() == [1, 0, 1]
    ids = torch.cat([ids, torch.tensor([[4], [2], [4]])], dim=1)
    # t=1: rows 0 and 2 get the rest of "Wait" whatever the model wants
    out = proc(ids, _scores([END, END, 1]))
    assert out[0].argmax() == 6 and out[2].argmax() == 6 and torch.isinf(out[0]).sum() == VOCAB - 1
    assert out[1].argmax() == 4 and proc.waits.tolist() == [1, 1, 1]  # row 1 now tries to stop: its Wait
    ids = torch.cat([ids, torch.tensor([[6], [4], [6]])], dim=1)
    # t=2: row 1 finishes its "Wait"; below the minimum, rows 0 and 2 have used their one insertion,
    # so stopping is allowed
    out = proc(ids, _scores([END, 1, 1]))
    assert out[1].argmax() == 6 and torch.isinf(out[1]).sum() == VOCAB - 1
    assert out[0].argmax() == END and not torch.isinf(out[[0, 2]]).any()
    ids = torch.cat([ids, torch.tensor([[END], [6], [1]])], dim=1)
    # t=3..6: row 0 has stopped thinking (left alone); at t=7 the others are forced to stop
    for t in range(3, 7):
        out = proc(ids, _scores([1, 1, 1]))
        assert not torch.isinf(out).any(), t
        ids = torch.cat([ids, torch.tensor([[1], [1], [1]])], dim=1)
    out = proc(ids, _scores([1, 1, 1]))
    assert out[0].argmax() == 1 and not torch.isinf(out[0]).any()
    assert out[1].argmax() == END and out[2].argmax() == END and torch.isinf(out[1]).sum() == VOCAB - 1


def test_budget_forcing_sampling_draws_the_stop_with_its_probability():
    proc = BudgetForcing(END, [4], min_thinking=10, max_thinking=None, max_waits=100, do_sample=True, temperature=1.0)
    ids = torch.zeros(2, 1, dtype=torch.long)
    sure = torch.zeros(2, VOCAB)
    sure[0, END] = 50.0  # row 0 stops with probability ~1, row 1 with ~1/VOCAB... made ~0 below
    sure[1, END] = -50.0
    out = proc(ids, sure)
    assert out[0].argmax() == 4 and out[1, END] == float("-inf") and proc.waits.tolist() == [1, 0]
    # half-and-half: over many rows, about half are redirected to "Wait"
    rows = 4000
    proc = BudgetForcing(END, [4], 10, None, 100, True, temperature=1.0, seed=3)
    half = torch.full((rows, VOCAB), -1e4)
    half[:, END] = 0.0
    half[:, 2] = 0.0
    proc(torch.zeros(rows, 1, dtype=torch.long), half)
    assert abs(proc.waits.float().mean().item() - 0.5) < 0.03


def test_token_probability_records_the_samplers_probability_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])  # vocab 4, token 0 the reflection
    e = torch.e

    def run(warpers) -> ProbabilityByPosition:
        into = ProbabilityByPosition(4)
        proc = TokenProbability([0], into, [3], warpers)
        ids = torch.zeros(2, 1, dtype=torch.long)
        proc(ids, logits)  # t=0: both rows
        proc(torch.cat([ids, torch.tensor([[3], [1]])], dim=1), logits)  # t=1: row 0 has ended (EOS)
        proc.flush()
        return into

    greedy = run([])  # the softmax of the processed logits
    assert greedy.mass[0] == pytest.approx(e**2 / (e**2 + 3) + e / (e + 3))
    assert greedy.mass[1] == pytest.approx(e / (e + 3)) and greedy.count.tolist() == [2, 1, 0, 0]
    hot = run(sampling_warpers(True, 2.0, None))  # temperature 2 halves the logits
    assert hot.mass[0] == pytest.approx(e / (e + 3) + e**0.5 / (e**0.5 + 3))
    # top-p 0.5: row 0 keeps token 0 alone (0.71 >= 0.5); row 1 keeps token 0 (0.475) and one 0.175 token
    nucleus = run(sampling_warpers(True, 1.0, 0.5))
    assert nucleus.mass[0] == pytest.approx(1.0 + e / (e + 1))
    assert nucleus.to_dict() == {"mass": pytest.approx([1.0 + e / (e + 1), e / (e + 1)]), "count": [2.0, 1.0]}
