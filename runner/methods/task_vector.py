"""Task-vector negation (task arithmetic, Ilharco et al., 2023).

Fine-tune theta_0 on the forget set alone (plain answer-token NLL) to theta_ft,
take the task vector tau = theta_ft - theta_0 and negate it:

    theta = theta_0 - lam * tau

Only the parameters that are trainable when ``unlearn`` is called take part
(the job sets them from ``model.trainable_layers``); the frozen rest never moves.

Variants (option ``variant``):

- ``full``: tau over every trainable parameter.
- ``svd``: the full tau, then each 2-D matrix of tau replaced by its best rank-``rank``
  approximation (truncated SVD in float32). 1-D tensors (norm gains, biases) are
  kept as they are: a vector has no rank to cut, they are a negligible share of the
  parameters, and dropping them would silently discard part of the fine-tune.
- ``lora``: fine-tune a LoRA adapter (peft) of rank ``rank`` on every ``nn.Linear`` whose
  weight is trainable (the output embedding excluded: it is vocabulary-sized and often
  tied to the input embedding), then tau = scaling * B @ A per adapted weight. The
  adapter is unloaded afterwards: the very same model object ends as a plain
  transformers model, with the negated delta written into its base weights. Other
  trainable parameters (norms) are not part of a LoRA task vector and stay at theta_0.

The fine-tune runs through the shared trainer. Its settings are the shared unlearning
``train_cfg`` with the non-null entries of ``finetune`` laid over it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError
from runner.methods.base import Method
from runner.models import trainable_state
from runner.options import Range
from runner.scoring import mean_nll
from runner.training import ListDataset, collate_single

VARIANTS = ("full", "svd", "lora")
ADAPTER = "default"
# the forget-set fine-tune; null entries fall back to the shared `unlearn` train_cfg
FINETUNE_DEFAULTS = {"epochs": 5, "learning_rate": None, "batch_size": None}


def forget_nll_loss(model, batch: dict) -> tuple[torch.Tensor, dict]:
    """The fine-tune objective: plain NLL of the forget answers."""
    loss = mean_nll(model, batch)
    return loss, {"forget_nll": loss.item()}


def low_rank(matrix: torch.Tensor, rank: int) -> torch.Tensor:
    """Best rank-``rank`` approximation (Eckart-Young) of a 2-D tensor, computed in float32."""
    u, s, vh = torch.linalg.svd(matrix.float(), full_matrices=False)
    k = min(rank, s.numel())
    return (u[:, :k] * s[:k]) @ vh[:k]


def finetune_cfg(shared, finetune: dict | None) -> DictConfig:
    """The shared train_cfg with the non-null ``finetune`` entries laid over it."""
    base = {} if shared is None else OmegaConf.to_container(OmegaConf.create(shared), resolve=True)
    overrides = {k: v for k, v in (finetune or {}).items() if v is not None}
    return OmegaConf.merge(OmegaConf.create(base), OmegaConf.create(overrides))


class TaskVector(Method):
    option_ranges = {
        "lam": Range(low=0, low_open=True, example="1.0"),
        "rank": Range(low=1, whole=True, example="8"),
        "lora_alpha": Range(low=0, low_open=True, optional=True, example="16"),
        "finetune.epochs": Range(low=0, low_open=True, optional=True, example="5"),
        "finetune.learning_rate": Range(low=0, low_open=True, optional=True, example="1e-5"),
        "finetune.batch_size": Range(low=1, whole=True, optional=True, example="8"),
    }

    def __init__(
        self,
        lam: float = 1.0,
        variant: str = "full",
        rank: int = 8,
        lora_alpha: float | None = None,
        finetune: dict | None = None,
    ):
        if variant not in VARIANTS:
            raise ConfigError("method.variant", f"unknown variant `{variant}`", f"use one of {', '.join(VARIANTS)}")
        self.lam, self.variant, self.rank = float(lam), variant, rank
        # LoRA scaling = lora_alpha / r; by default alpha = 2r (scaling 2), the usual convention
        self.lora_alpha = float(lora_alpha) if lora_alpha is not None else 2.0 * rank
        ft = dict(FINETUNE_DEFAULTS)
        if finetune is not None:
            ft.update(OmegaConf.to_container(finetune, resolve=True) if isinstance(finetune, DictConfig) else finetune)
        self.finetune = ft
        # the task vector actually negated (after SVD truncation / the LoRA delta), float32 on the CPU,
        # keyed by parameter name: theta = theta_0 - lam * tau
        self.tau: dict[str, torch.Tensor] = {}

    def prepare(self, data) -> None:
        """Nothing to precompute: theta_0 is snapshotted in ``unlearn``."""

    def unlearn(self, model, data, train: Callable, train_cfg) -> dict:
        # the fine-tune on the forget set: the run's trainer settings with `finetune` laid over them
        cfg = finetune_cfg(train_cfg, self.finetune)

        def run_finetune(m) -> dict:
            return train(
                m,
                ListDataset(data.forget),
                collate_single(data.pad_id),
                forget_nll_loss,
                stage="task_vector_finetune",
                train_cfg=cfg,
            )

        if self.variant == "lora":
            stats, tau = self._lora_task_vector(model, data.seed, run_finetune)
        else:
            stats, tau = self._full_task_vector(model, run_finetune)
        self.tau = {n: t.detach().cpu() for n, t in tau.items()}
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, t in tau.items():
                p = params[name]
                p.copy_((p.float() - self.lam * t.to(p.device)).to(p.dtype))
        tau_norm = math.sqrt(sum(float(t.double().pow(2).sum()) for t in tau.values()))
        return {**stats, "tau_norm": tau_norm, "variant": self.variant}

    # ---- the task vectors ------------------------------------------------------------------

    def _full_task_vector(self, model, run_finetune) -> tuple[dict, dict[str, torch.Tensor]]:
        """Fine-tune the trainable parameters themselves; return theta_0 in them and tau (float32)."""
        theta0 = trainable_state(model)
        if not theta0:
            raise ConfigError("model.trainable_layers", "no parameter is trainable", "make some layers trainable")
        stats = run_finetune(model)
        params = dict(model.named_parameters())
        tau = {}
        with torch.no_grad():
            for name, before in theta0.items():
                p = params[name]
                t = p.float() - before.to(p.device).float()
                if self.variant == "svd" and t.ndim == 2:
                    t = low_rank(t, self.rank)
                tau[name] = t
                p.copy_(before.to(p.device))  # back to theta_0; the caller writes theta_0 - lam * tau
        return stats, tau

    def _lora_task_vector(self, model, seed: int, run_finetune) -> tuple[dict, dict[str, torch.Tensor]]:
        """Fine-tune a LoRA adapter injected in place, read scaling * B @ A per weight, unload the adapter."""
        from peft import LoraConfig, LoraModel
        from peft.tuners.lora import LoraLayer

        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        output = model.get_output_embeddings()
        targets = sorted(
            name
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module.weight.requires_grad and module is not output
        )
        if not targets:
            raise ConfigError(
                "method.variant",
                "`lora` found no trainable nn.Linear module to adapt",
                "make some decoder layers trainable (model.trainable_layers), or use variant=full",
            )
        config = LoraConfig(
            r=self.rank, lora_alpha=self.lora_alpha, lora_dropout=0.0, bias="none", target_modules=targets
        )
        with torch.random.fork_rng(devices=[]):  # a reproducible adapter init, global RNG left alone
            torch.manual_seed(seed)
            lora = LoraModel(model, config, ADAPTER)  # injects into `model` in place, marks only LoRA trainable
        try:
            stats = run_finetune(model)
            tau = {}
            with torch.no_grad():
                for name, module in model.named_modules():
                    if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
                        a = module.lora_A[ADAPTER].weight.float()
                        b = module.lora_B[ADAPTER].weight.float()
                        tau[f"{name}.weight"] = (b @ a) * module.scaling[ADAPTER]
        finally:
            lora.unload()  # the LoRA wrappers give way to their original nn.Linear modules, in `model`
            for name, p in model.named_parameters():
                p.requires_grad_(name in trainable)
        return stats, tau
