"""GSM8K's shipped data and its answer check (the final number)."""

from __future__ import annotations

from runner.data import gsm8k


def test_gsm8k_final_number_and_exact_match():
    assert gsm8k.final_number("She pays 3 * 1,000 = 3,000 dollars.\n#### 3,000") == "3000"
    assert gsm8k.final_number("so 4 + 5 = 9 and then 9 - 2 = 7.") == "7"  # no ####: the last number
    assert gsm8k.final_number("#### -12.5 apples") == "-12.5"
    assert gsm8k.final_number("no digits here") is None
    assert gsm8k.exact_match("... so the answer is 18.0", "16 - 3 - 4 = 9 ... 9 * 2 = 18\n#### 18")
    assert not gsm8k.exact_match("#### 17", "#### 18")
    train, test = gsm8k.load("train"), gsm8k.load("test")
    assert (len(train), len(test)) == (7473, 1319) and all("####" in r["answer"] for r in test[:50])
