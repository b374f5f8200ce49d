"""Representation Misdirection for Unlearning (Li et al., 2024, the WMDP paper).

loss = E_{D_f} mse_tokens(h_theta^(l)(x), c * u) + alpha * E_{D_r} mse_tokens(h_theta^(l)(x), h_theta0^(l)(x))

- h^(l) is the output hidden state of decoder layer ``l`` (0-based index into
  ``model.base_model.layers``; ``hidden_states[l + 1]`` in transformers' terms).
  The forward pass stops there: no later layer, final norm or LM head runs.
- u is drawn once per run, ``torch.rand(d)`` (uniform on [0, 1)) from a
  generator seeded with the run's seed, and scaled to unit norm; c is
  ``steering_coeff``.
- Reduction (the reference code's choice, ``F.mse_loss``): the squared
  difference is averaged over the hidden dimension *and* over the tokens of the
  batch, i.e. mean_tokens ||.||^2 / d. Padding positions (``attention_mask ==
  0``) are left out of the mean. Every real token counts, prompt and answer
  alike (the mask, not the labels, selects them), so plain text corpora work too.
- Only the MLP down-projection weights of layers l-2..l train (``select_trainable``).
- h_theta0 on the retain batch comes from the same model with the trainable
  parameters swapped back to their saved pre-unlearning values
  (``OriginalWeights.active()``): no model copy. The frozen pass recomputes the
  layers below the lowest trainable one too, though they equal the trained
  pass's (sharing them would save most of the frozen forward; not done).
- ``forget_term`` / ``retain_term`` give the two unweighted terms separately
  (BLUR and ILU combine them); ``loss`` is forget + alpha * retain.
"""

from __future__ import annotations

import logging
import re

import torch

from runner.errors import ConfigError
from runner.methods.reference import OriginalWeights
from runner.models import decoder_layers
from runner.scoring import unwrap

log = logging.getLogger(__name__)


# ---- pure losses -----------------------------------------------------------------------------


def _masked_mse(diff: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``diff**2`` over the hidden dimension and the tokens where ``mask`` is 1 (float32; 0 if none)."""
    keep = mask.to(device=diff.device, dtype=torch.bool).unsqueeze(-1)  # (B, T, 1)
    # where, not a product with the mask: an inf at a padded position must not turn the sum into nan
    squared = torch.where(keep, diff.float(), 0.0).pow(2)
    return squared.sum() / (keep.sum() * diff.shape[-1]).clamp(min=1)


def rmu_forget_loss(hidden: torch.Tensor, mask: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
    """mean over unmasked tokens and hidden dims of (h - control)^2; hidden (B, T, d), mask (B, T), control (d,)."""
    return _masked_mse(hidden.float() - control.to(device=hidden.device, dtype=torch.float32), mask)


def rmu_retain_loss(hidden: torch.Tensor, frozen_hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean over unmasked tokens and hidden dims of (h - h_frozen)^2; both (B, T, d), mask (B, T)."""
    return _masked_mse(hidden.float() - frozen_hidden.detach().float(), mask)


def control_vector(hidden_size: int, seed: int) -> torch.Tensor:
    """u = rand(d) / ||rand(d)||, uniform on [0, 1) from a generator seeded with ``seed`` (float32, CPU)."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(hidden_size, generator=generator, dtype=torch.float32)
    return u / u.norm()


# ---- the truncated forward -------------------------------------------------------------------


class _StopForward(Exception):
    """Raised by the hook on layer l to end the forward pass there; carries the layer's output."""

    def __init__(self, output):
        super().__init__("forward stopped at the RMU layer")
        self.output = output


def _check_layer(model, layer: int) -> int:
    depth = len(decoder_layers(unwrap(model)))
    if not 0 <= layer < depth:
        raise ConfigError(
            "method.layer",
            f"layer {layer} is outside the model's decoder layers 0..{depth - 1}",
            f"choose a layer index in 0..{depth - 1} (the paper uses 7 on 32-layer Zephyr-7B)",
        )
    return depth


def hidden_at_layer(model, batch: dict, layer: int) -> torch.Tensor:
    """Output hidden state (B, T, d) of decoder layer ``layer``; the layers above it never run.

    A forward hook on the layer raises a private exception that carries its
    output out of ``base_model``; the hook is removed whatever happens.
    """
    m = unwrap(model)
    _check_layer(m, layer)

    def stop(module, args, output):
        raise _StopForward(output)

    handle = decoder_layers(m)[layer].register_forward_hook(stop)
    try:
        m.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    except _StopForward as captured:
        output = captured.output
    else:  # pragma: no cover - only if a model skips its own layers
        raise RuntimeError(f"decoder layer {layer} did not run in {type(m).__name__}.base_model")
    finally:
        handle.remove()
    return output[0] if isinstance(output, tuple) else output


# ---- the method --------------------------------------------------------------------------------


class RMU:
    """Steer layer-``layer`` activations of forget text to ``steering_coeff * u``; keep retain activations at theta_0.

    ``trainable_layers`` (default ``[layer-2, layer-1, layer]``, negatives
    dropped) picks the layers whose MLP down-projection trains;
    ``trainable_params`` (a regex searched in parameter names) overrides that
    choice when set.
    """

    def __init__(
        self,
        layer: int = 7,
        trainable_layers: list[int] | None = None,
        steering_coeff: float = 6.5,
        alpha: float = 1200.0,
        trainable_params: str | None = None,
    ):
        self.layer = int(layer)
        if self.layer < 0:
            raise ConfigError("method.layer", f"layer {self.layer} is negative", "give a 0-based decoder layer index")
        if trainable_layers is None:
            trainable_layers = [i for i in (self.layer - 2, self.layer - 1, self.layer) if i >= 0]
        self.trainable_layers = sorted({int(i) for i in trainable_layers})
        if trainable_params is None:
            if not self.trainable_layers:
                raise ConfigError("method.trainable_layers", "the list is empty", "give layer indices, or null")
            too_high = [i for i in self.trainable_layers if not 0 <= i <= self.layer]
            if too_high:
                raise ConfigError(
                    "method.trainable_layers",
                    f"{too_high} are not in 0..{self.layer} (layers above method.layer get no gradient)",
                    f"use layers at or below method.layer={self.layer}, e.g. null for the paper's l-2..l",
                )
            names = "|".join(str(i) for i in self.trainable_layers)
            trainable_params = rf"(?:^|\.)layers\.(?:{names})\.mlp\.down_proj\.weight$"
        self.trainable_params = trainable_params
        try:
            self._pattern = re.compile(trainable_params)
        except re.error as exc:
            raise ConfigError(
                "method.trainable_params", f"`{trainable_params}` is not a regex ({exc})", "fix the regex"
            ) from exc
        self.steering_coeff = float(steering_coeff)
        self.alpha = float(alpha)
        self.control: torch.Tensor | None = None  # c * u, set in prepare
        self.original: OriginalWeights | None = None

    def select_trainable(self, model) -> list[str]:
        """Freeze every parameter but those whose name matches ``trainable_params``; returns their names."""
        m = unwrap(model)
        _check_layer(m, self.layer)
        names = [n for n, _ in m.named_parameters() if self._pattern.search(n)]
        if not names:
            example = next((n for n, _ in m.named_parameters() if "down_proj" in n), None) or next(
                n for n, _ in m.named_parameters()
            )
            raise ConfigError(
                "method.trainable_params",
                f"`{self.trainable_params}` matches no parameter of {type(m).__name__}",
                f"give a regex searched in parameter names (such as `{example}`)",
            )
        m.requires_grad_(False)
        params = dict(m.named_parameters())
        for n in names:
            params[n].requires_grad_(True)
        log.info("RMU trains %d parameter tensors: %s", len(names), ", ".join(names))
        return names

    def prepare(self, data) -> None:
        m = unwrap(data.model)
        _check_layer(m, self.layer)
        u = control_vector(m.config.hidden_size, data.seed)
        self.control = self.steering_coeff * u
        self.original = OriginalWeights(m)  # the parameters select_trainable left trainable

    def forget_term(self, model, batch) -> torch.Tensor:
        """Unweighted forget loss: MSE of layer-l forget activations to c * u (also used by BLUR / ILU)."""
        forget = batch["forget"]
        return rmu_forget_loss(hidden_at_layer(model, forget, self.layer), forget["attention_mask"], self.control)

    def retain_term(self, model, batch) -> torch.Tensor:
        """Unweighted retain loss: MSE of layer-l retain activations to theta_0's (computed first, without grad)."""
        retain = batch["retain"]
        with self.original.active():  # theta_0: trainable parameters swapped back; no_grad inside
            frozen = hidden_at_layer(model, retain, self.layer)
        return rmu_retain_loss(hidden_at_layer(model, retain, self.layer), frozen, retain["attention_mask"])

    def loss(self, model, batch):
        retain_loss = self.retain_term(model, batch)
        forget_loss = self.forget_term(model, batch)
        loss = forget_loss + self.alpha * retain_loss
        return loss, {"rmu_forget": forget_loss.item(), "rmu_retain": retain_loss.item()}
