"""The tiny pipeline and its attack context, built once per module that asks for them."""

from __future__ import annotations

import pytest

from tests.conftest import compose_cfg

TINY_JOB = [
    "task=diffusion_attack",
    "precision=fp32",
    "generation.steps=2",
    "generation.batch_size=4",
    "loss.draws=8",
    "loss.random_sets=2",
    "concept.images.n=4",
]


def tiny_pipeline():
    import torch

    from runner.diffusion.pipeline import load_pipeline

    return load_pipeline(compose_cfg("task=diffusion_attack").diffusion_model, torch.device("cpu"), "ddim")


@pytest.fixture(scope="module")
def tiny_pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def attack_ctx(tiny_pipe):
    """An AttackContext over the tiny pipeline and four synthetic concept images."""
    import torch

    from runner.diffusion.base import AttackContext
    from runner.diffusion.concept import synthetic_images, to_tensor
    from runner.diffusion.loss import DenoisingLoss
    from runner.diffusion.prompts import PromptEncoder

    device = torch.device("cpu")
    encoder = PromptEncoder(tiny_pipe.tokenizer, tiny_pipe.text_encoder, device)
    images = synthetic_images(4, 16, "circle", (220, 40, 40), seed=0)
    loss = DenoisingLoss(tiny_pipe, to_tensor(images), ["a picture", "a photo"], device)
    return AttackContext(encoder=encoder, loss=loss, vocab=encoder.vocab, tokenizer=tiny_pipe.tokenizer, seed=11)
