"""The TensorBoard tracker: a real tiny job's event files, read back."""

from __future__ import annotations

import pytest

from runner import job


def test_tensorboard_writes_event_files_with_curves_and_final_metrics(tiny_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = job.run(tiny_cfg("logger=tensorboard", "method=ga", "seed=5"), tmp_path)
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"unlearn/loss", "unlearn/forget_nll", "unlearn/learning_rate", "unlearn/grad_norm"} <= set(tags)
    final = acc.Scalars("final/unlearned/forget_prob")[0].value
    assert final == pytest.approx(result["metrics"]["unlearned"]["forget_prob"], rel=1e-6)  # stored as float32
    assert acc.Scalars("final/timings/unlearn")[0].value == pytest.approx(result["timings"]["unlearn"], rel=1e-6)

    # the final metrics as the console table, arrows included; the status as text
    def text(tag):
        return acc.Tensors(f"{tag}/text_summary")[0].tensor_proto.string_val[0].decode()

    table = text("final/metrics")
    assert "| forget_prob ↓ |" in table and "| model_utility ↑ |" in table
    assert f"{result['metrics']['unlearned']['forget_prob']:.4f}" in table
    assert text("final/status") == "completed"
    assert "unlearn:" in text("config")  # the job's config, as YAML
