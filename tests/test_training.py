"""The training loop (runner/training.py): a NaN loss marks the run failed at its step."""

from __future__ import annotations

import json

import pytest

from runner import job
from runner.errors import TrainingDiverged


def test_nan_loss_marks_the_run_failed_with_the_step(tiny_cfg, tmp_path):
    # gradient ascent at an absurd learning rate blows the weights up within a few steps
    cfg = tiny_cfg("method=ga", "unlearn.learning_rate=1e8", "unlearn.max_grad_norm=0", "unlearn.max_steps=50")
    with pytest.raises(TrainingDiverged):
        job.run(cfg, tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed"
    assert record["error"]["stage"] == "unlearn"
    assert isinstance(record["error"]["step"], int) and record["error"]["step"] >= 1


def _trained_weights(tmp_path, checkpointing: bool, parts: bool):
    """Two NPO steps of the toy Llama through the shared trainer; the trained weights."""
    import torch
    from omegaconf import OmegaConf

    from runner.training import PairedDataset, collate_pairs, train
    from tests.conftest import TOY_BOS, TOY_EOS, TOY_PAD, method_from_yaml, random_llama, toy_data

    model = random_llama(max_position_embeddings=64, pad_token_id=TOY_PAD, bos_token_id=TOY_BOS, eos_token_id=TOY_EOS)
    method = method_from_yaml("npo")
    data = toy_data(model)
    method.prepare(data)
    cfg = OmegaConf.create(
        {
            "epochs": 1,
            "max_steps": 2,
            "batch_size": 2,
            "grad_accum": 1,
            "learning_rate": 1e-2,
            "lr_scheduler": "constant",
        }
    )
    cfg.update(
        {"warmup_ratio": 0.0, "weight_decay": 0.0, "max_grad_norm": 1.0, "gradient_checkpointing": checkpointing}
    )
    result = train(
        model,
        PairedDataset(data.forget, data.retain, data.seed),
        collate_pairs(data.pad_id),
        method.loss,
        cfg,
        seed=5,
        precision="fp32",
        output_dir=tmp_path,
        stage="unlearn",
        parts_fn=method.loss_parts if parts else None,
    )
    assert not model.model.gradient_checkpointing  # on for the stage only
    # every logging step's loss and the method's own terms (NPO: its forget term, the retain NLL), for results.json
    terms = result["terms"]
    assert [t["step"] for t in terms] == [1, 2] and all({"loss", "npo_forget", "retain_nll"} <= set(t) for t in terms)
    assert all(
        t["loss"] == pytest.approx(method.gamma * t["npo_forget"] + method.alpha * t["retain_nll"], abs=1e-3)
        for t in terms
    )
    return {n: p.detach().clone() for n, p in model.named_parameters()}, torch


def test_checkpointing_and_parts_train_the_same_weights(tmp_path, capsys):
    """Gradient checkpointing and back-propagating the loss part by part change memory, not the update."""
    plain, torch = _trained_weights(tmp_path / "a", checkpointing=False, parts=False)
    assert "unlearn: 100%" in capsys.readouterr().err  # the progress bar names its stage
    for checkpointing, parts in ((True, False), (False, True), (True, True)):
        other, _ = _trained_weights(tmp_path / f"{checkpointing}{parts}", checkpointing, parts)
        moved = max((plain[n] - other[n]).abs().max().item() for n in plain)
        assert moved < 1e-5, (checkpointing, parts, moved)
    # and the two steps did move the weights (the comparison is not between untouched models)
    fresh = {n: p.detach() for n, p in _untrained().named_parameters()}
    assert max((plain[n] - fresh[n]).abs().max().item() for n in plain) > 1e-3


def _untrained():
    from tests.conftest import TOY_BOS, TOY_EOS, TOY_PAD, random_llama

    return random_llama(max_position_embeddings=64, pad_token_id=TOY_PAD, bos_token_id=TOY_BOS, eos_token_id=TOY_EOS)
