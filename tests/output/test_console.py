"""The console table at the end of a job: metric rows with their arrows, one column per model."""

from __future__ import annotations

from runner.output.console import constant_letter_warnings, letters_table, metrics_table


def test_metrics_table_rows_arrows_and_number_formats():
    table = metrics_table(
        {
            "target": {"forget_prob": 0.91234567, "forget_quality": 1.5e-5, "privleak": -0.0, "custom": None},
            "unlearned": {"forget_prob": 0.1, "forget_quality": 0.5, "privleak": 2.0},
        }
    )
    assert table.splitlines() == [
        "| metric | target | unlearned |",
        "|---|---|---|",
        "| forget_prob ↓ | 0.9123 | 0.1000 |",
        "| forget_quality ↑ | 1.50e-05 | 0.5000 |",
        "| privleak →0 | -0.0000 | 2.0000 |",
        "| custom | - | - |",  # a metric no spec declares: no arrow
    ]


def test_answer_letters_and_the_constant_letter_warning():
    letters = {
        "target": {"mmlu": {"counts": {"A": 90, "B": 0, "C": 0, "D": 0}, "n": 90, "accuracy": 0.25, "top_share": 1.0}},
        "unlearned": {
            "mmlu": {"counts": {"A": 9, "B": 1, "C": 0, "D": 0}, "n": 10, "accuracy": None, "top_share": 0.9}
        },
    }
    assert letters_table(letters).splitlines()[1:] == [
        "  target mmlu: A 100% B 0% C 0% D 0% (n=90; accuracy 0.250)",
        "  unlearned mmlu: A 90% B 10% C 0% D 0% (n=10)",
    ]
    # over 90 %: warned; exactly 90 %: not
    assert constant_letter_warnings(letters, 0.9) == [
        "target mmlu: the model answers A to 90 of 90 questions (100%): its accuracy is that letter's share of "
        "the answers, not a measure of knowledge"
    ]
