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
- Only the MLP down-projection weights of layers l-2..l train (``select_trainable``), chosen by
  module name (``trainable_modules`` in ``trainable_layers``), never by parameter position: a
  position lands on another matrix in a model whose attention has biases (Qwen2).
- Pay only for what changes. The layers below the lowest trainable one never
  change, so ``prepare`` runs them once per example and keeps their output;
  each step then runs only the trainable block up to layer l. h_theta0 on the
  retain set never changes either and is kept per example too. When those
  activations would exceed ``activation_cache_mb``, each step instead runs the
  whole prefix, and h_theta0 comes from the same model with the trainable
  parameters swapped back to their saved values (``OriginalWeights.active()``):
  never a model copy.
- ``forget_term`` / ``retain_term`` give the two unweighted terms separately
  (BLUR and ILU combine them); ``loss`` is forget + alpha * retain.
- ``traces`` (off by default): also measure, before and after unlearning, the forget loss on
  held-out reasoning traces of the forget documents (``runner.methods.reasoning_traces``), the
  number R²MU is compared on; it changes nothing in the update.

The pieces live beside it: the losses and control vector (``rmu_losses``), the truncated forward
(``layer_forward``), the module-name targets (``module_targets``) and the trace sets and held-out trace
loss R²MU shares (``rmu_traces``).
"""

from __future__ import annotations

import logging
import re

import torch

from runner.errors import ConfigError
from runner.methods.base import ForgetRetainMethod, sum_parts
from runner.methods.layer_forward import check_layer, hidden_at_layer, hidden_from_block, pad_rows
from runner.methods.module_targets import first_trainable_layer, module_list, module_name_pattern
from runner.methods.reasoning_traces import TRACE_RANGES, TraceSettings
from runner.methods.rmu_losses import control_vector, rmu_forget_loss, rmu_retain_loss
from runner.methods.rmu_traces import trace_mse, trace_sets
from runner.methods.theta0 import OriginalWeights
from runner.options import Range
from runner.scoring import unwrap

log = logging.getLogger(__name__)


class RMU(ForgetRetainMethod):
    """Steer layer-``layer`` activations of forget text to ``steering_coeff * u``; keep retain activations at theta_0.

    ``trainable_layers`` (default ``[layer-2, layer-1, layer]``, negatives
    dropped) and ``trainable_modules`` (default ``[mlp.down_proj]``) pick the
    weights that train, by module name; ``trainable_params`` (a regex searched
    in parameter names) overrides that choice when set.
    """

    option_ranges = {
        "layer": Range(low=0, whole=True, example="7"),  # 0-based decoder layer index
        "steering_coeff": Range(low=0, low_open=True, example="6.5"),
        "activation_cache_mb": Range(low=0, example="4096"),
        **TRACE_RANGES,
    }

    def __init__(
        self,
        layer: int = 7,
        trainable_layers: list[int] | None = None,
        steering_coeff: float = 6.5,
        alpha: float = 1200.0,
        trainable_params: str | None = None,
        activation_cache_mb: float = 4096,
        trainable_modules: list[str] | None = None,
        traces: dict | None = None,
    ):
        self.layer = int(layer)
        self.activation_cache_mb = float(activation_cache_mb)
        # filled by prepare when the activations fit in activation_cache_mb: per set of examples
        # ("forget", "retain", ...), the input of the lowest trainable layer and theta_0's layer-l output
        self.first_trainable: int | None = None
        self.block_inputs: dict[str, dict[int, torch.Tensor]] = {}
        self.frozen: dict[str, dict[int, torch.Tensor]] = {}
        if trainable_layers is None:
            trainable_layers = [i for i in (self.layer - 2, self.layer - 1, self.layer) if i >= 0]
        self.trainable_layers = sorted({int(i) for i in trainable_layers})
        self.trainable_modules = module_list(
            ["mlp.down_proj"] if trainable_modules is None else trainable_modules, "method.trainable_modules"
        )
        self._params_key = "method.trainable_params" if trainable_params is not None else "method.trainable_modules"
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
            trainable_params = module_name_pattern(self.trainable_layers, self.trainable_modules)
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
        self.traces = None if traces is None else TraceSettings.from_options(traces, "method.traces")
        self.trace_train: list[dict] = []  # trace inputs of the documents not held out (R²MU trains on them)
        self.trace_eval: list[dict] = []  # the held-out ones, measured before and after unlearning

    @property
    def frozen_retain(self) -> dict[int, torch.Tensor]:
        return self.frozen.get("retain", {})

    def select_trainable(self, model) -> list[str]:
        """Freeze every parameter but those whose name matches ``trainable_params``; returns their names."""
        m = unwrap(model)
        check_layer(m, self.layer)
        names = [n for n, _ in m.named_parameters() if self._pattern.search(n)]
        if not names:
            example = next((n for n, _ in m.named_parameters() if "down_proj" in n), None) or next(
                n for n, _ in m.named_parameters()
            )
            raise ConfigError(
                self._params_key,
                f"`{self.trainable_params}` matches no parameter of {type(m).__name__}",
                "give module names inside a decoder layer (method.trainable_modules) or a regex searched in "
                f"parameter names (method.trainable_params), such as `{example}`",
            )
        m.requires_grad_(False)
        params = dict(m.named_parameters())
        for n in names:
            params[n].requires_grad_(True)
        log.info("RMU trains %d parameter tensors: %s", len(names), ", ".join(names))
        return names

    def prepare(self, data) -> None:
        m = unwrap(data.model)
        check_layer(m, self.layer)
        u = control_vector(m.config.hidden_size, data.seed)
        self.control = self.steering_coeff * u
        self.original = OriginalWeights(m)  # the parameters select_trainable left trainable
        if self.traces is not None:  # before any activation is cached: the trace sets may join the cache
            self._prepare_traces(data)
        self._cache_activations(data)

    def _prepare_traces(self, data) -> None:
        """The model's traces about the forget documents (cached), split into trained and held-out inputs."""
        self.trace_train, self.trace_eval = trace_sets(self.traces, data, type(self).__name__)

    def _activation_sets(self, data) -> list[tuple[str, list[dict], bool]]:
        """(name, examples, whether theta_0's layer-l output is kept) of each set a training step reads."""
        return [("forget", data.forget, False), ("retain", data.retain, True)]

    @torch.no_grad()
    def _cache_activations(self, data) -> None:
        m = unwrap(data.model)
        first = first_trainable_layer(m)
        sets = self._activation_sets(data)
        tokens = sum((1 + keep) * sum(len(e["input_ids"]) for e in examples) for _, examples, keep in sets)
        size_mb = tokens * m.config.hidden_size * 4 / 2**20
        if first is None or size_mb > self.activation_cache_mb:
            log.info("RMU: no activation cache (%.0f MiB needed, budget %.0f MiB)", size_mb, self.activation_cache_mb)
            return
        from runner.data.qa import collate_qa

        device = next(m.parameters()).device
        was_training = m.training
        m.eval()
        try:
            for name, examples, keep in sets:
                self.block_inputs[name] = {}
                if keep:
                    self.frozen[name] = {}
                for start in range(0, len(examples), data.eval_batch_size):
                    chunk = examples[start : start + data.eval_batch_size]
                    batch = {k: v.to(device) for k, v in collate_qa(chunk, data.pad_id).items()}
                    below = (
                        hidden_at_layer(m, batch, first - 1)
                        if first > 0
                        else m.get_input_embeddings()(batch["input_ids"])
                    )
                    frozen = hidden_at_layer(m, batch, self.layer) if keep else None
                    for row, e in enumerate(chunk):
                        n = len(e["input_ids"])
                        self.block_inputs[name][e["index"]] = below[row, :n].float().cpu()
                        if frozen is not None:
                            self.frozen[name][e["index"]] = frozen[row, :n].float().cpu()
        finally:
            m.train(was_training)
        self.first_trainable = first
        log.info("RMU: cached layer-%d inputs and frozen activations (%.0f MiB)", first, size_mb)

    def _cached(self, part: dict, name: str) -> bool:
        """The cache applies to batches of the examples prepare saw (they carry their ``index``)."""
        return self.first_trainable is not None and "index" in part and name in self.block_inputs

    def _hidden(self, model, part: dict, name: str) -> torch.Tensor:
        if not self._cached(part, name):
            return hidden_at_layer(model, part, self.layer)
        rows = [self.block_inputs[name][int(i)] for i in part["index"]]
        dtype = next(unwrap(model).parameters()).dtype
        inputs = pad_rows(rows, part["input_ids"]).to(dtype)
        return hidden_from_block(model, part, inputs, self.first_trainable, self.layer)

    def _frozen(self, model, part: dict, name: str) -> torch.Tensor:
        """theta_0's layer-l output on ``part``: kept from prepare, or recomputed with the saved weights swapped in."""
        if self._cached(part, name) and name in self.frozen:
            return pad_rows([self.frozen[name][int(i)] for i in part["index"]], part["input_ids"])
        with self.original.active():  # theta_0: trainable parameters swapped back; no_grad inside
            return hidden_at_layer(model, part, self.layer)

    def forget_term(self, model, batch) -> torch.Tensor:
        """Unweighted forget loss: MSE of layer-l forget activations to c * u (also used by BLUR / ILU)."""
        forget = batch["forget"]
        return rmu_forget_loss(self._hidden(model, forget, "forget"), forget["attention_mask"], self.control)

    def retain_term(self, model, batch) -> torch.Tensor:
        """Unweighted retain loss: MSE of layer-l retain activations to theta_0's."""
        retain = batch["retain"]
        frozen = self._frozen(model, retain, "retain")
        return rmu_retain_loss(self._hidden(model, retain, "retain"), frozen, retain["attention_mask"])

    def loss(self, model, batch):
        return sum_parts(RMU.loss_parts(self, model, batch))  # its own split, even where a subclass redefines loss

    def loss_parts(self, model, batch):
        """forget, then alpha * retain, under RMU's own term names (the trainer back-propagates each on its own)."""
        forget_loss = self.forget_term(model, batch)
        yield forget_loss, {"rmu_forget": forget_loss.item()}
        retain_loss = self.retain_term(model, batch)
        yield self.alpha * retain_loss, {"rmu_retain": retain_loss.item()}

    # ---- the update, and the trace measurement around it -------------------------------------------

    def unlearn(self, model, data, train, train_cfg) -> dict:
        """The shared trainer's update; with ``traces``, the held-out trace loss before and after it too."""
        before = self.trace_mse(model, data) if self.trace_eval else None
        stats = self._update(model, data, train, train_cfg)
        if before is not None:
            after = self.trace_mse(model, data)
            stats["trace_mse"] = {
                "start": before,
                "end": after,
                "relative_drop": (before - after) / before if before > 0 else None,
                "n": len(self.trace_eval),
            }
            log.info("held-out trace MSE to c*u: %.4f -> %.4f", before, after)
        return stats

    def _update(self, model, data, train, train_cfg) -> dict:
        return super().unlearn(model, data, train, train_cfg)

    def trace_mse(self, model, data) -> float:
        """MSE(h_theta^(l)(x_trace), c * u) over the held-out trace inputs (runner/methods/rmu_traces.py)."""
        return trace_mse(model, data, self.trace_eval, self.layer, self.control)
