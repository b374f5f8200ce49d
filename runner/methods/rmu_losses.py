"""RMU's two losses and its control vector (Li et al., 2024, the WMDP paper): pure functions on tensors.

Reduction (the reference code's choice, ``F.mse_loss``): the squared difference is averaged over the
hidden dimension *and* over the tokens of the batch, i.e. mean_tokens ||.||^2 / d; padding positions
(``attention_mask == 0``) are left out of the mean.
"""

from __future__ import annotations

import torch


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
