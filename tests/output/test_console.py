"""The console table at the end of a job: metric rows with their arrows, one column per model."""

from __future__ import annotations

from runner.output.console import metrics_table


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
