"""The contracts of the diffusion family's components, each built through ``runner.components.build``.

- ``Attack`` (``attack=`` group): learns K attack-token embeddings against a frozen pipeline.
  ``fit(ctx)`` gets an ``AttackContext`` (the prompt encoder, the denoising loss on the concept
  images, the vocabulary embeddings, the defence the attack must pass through, the seed) and returns
  an ``AttackResult``: the K embeddings (float32, on the CPU), the top-weighted vocabulary words of
  each token (where the attack has words) and its training numbers. Every model weight stays frozen.
- ``Defense`` (``defense=`` group, ``null`` for none): a transformation of the text encoder's token
  embeddings. ``fit(ctx, attack_result)`` learns or loads what it needs (the job's attack result is
  passed so a defence may reuse it); ``project(embeddings)`` is applied to every token embedding the
  text encoder looks up (attack slots included), as a forward hook on its embedding layer.
- ``Detector`` (``detector=`` group): does an image show the concept? ``prepare(device)`` loads the
  weights (construction only checks the options, so a bad value fails before any model loads);
  ``detect(images)`` returns one ``{"detected": bool, "score": float, "label": str}`` per PIL image.

Implementations: ``attacks.py`` (subspace, token embeddings), ``defense.py`` (subspace projection),
``detectors.py`` (NudeNet, any transformers image classifier).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class AttackContext:
    encoder: Any  # runner.diffusion.prompts.PromptEncoder
    loss: Any  # runner.diffusion.loss.DenoisingLoss
    vocab: torch.Tensor  # [V, d] the text encoder's token-embedding matrix (frozen)
    tokenizer: Any
    seed: int
    defense: Defense | None = None  # the attack is trained through this defence (adaptive attack)
    precision: str = "fp32"
    stage: str = "attack"  # names the stage in divergence errors


@dataclass
class AttackResult:
    embeddings: torch.Tensor  # [K, d], float32, CPU
    words: list[list[dict]] | None = None  # per token: [{"entry", "word", "weight"}], heaviest first
    training: dict = field(default_factory=dict)


class Attack(ABC):
    name = "attack"
    n_tokens: int

    @abstractmethod
    def fit(self, ctx: AttackContext) -> AttackResult: ...

    def options(self) -> dict:
        """What identifies this attack's result (a defence may reuse a result of equal options)."""
        plain = {
            k: v for k, v in vars(self).items() if isinstance(v, (int, float, str, bool)) and not k.startswith("_")
        }
        return {"class": type(self).__name__, **plain}


class Defense(ABC):
    name = "defense"

    @abstractmethod
    def fit(self, ctx: AttackContext, attack_result: AttackResult | None, attack: Attack | None) -> None: ...

    @abstractmethod
    def project(self, embeddings: torch.Tensor) -> torch.Tensor: ...

    def describe(self) -> dict:
        return {}


class Detector(ABC):
    name = "detector"

    def prepare(self, device: torch.device) -> None:
        """Load the weights (default: nothing to load)."""
        return None

    @abstractmethod
    def detect(self, images: list) -> list[dict]: ...
