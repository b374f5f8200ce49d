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
"""

from __future__ import annotations

import logging
import re

import torch

from runner.errors import ConfigError
from runner.methods.base import ForgetRetainMethod, sum_parts
from runner.methods.reasoning_traces import TRACE_RANGES, TraceSettings
from runner.methods.theta0 import OriginalWeights
from runner.models import decoder_layers
from runner.options import Range
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


class _Passthrough(torch.nn.Module):
    """Stands in for a frozen decoder layer whose output is already known."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def hidden_from_block(model, batch: dict, block_inputs: torch.Tensor, first: int, layer: int) -> torch.Tensor:
    """``hidden_at_layer``, with the input of decoder layer ``first`` given: layers below ``first`` are skipped.

    ``block_inputs`` (B, T, d) is what layer ``first`` receives; the layers
    below it are swapped for pass-throughs for the duration of the call (the
    model still builds its masks and position embeddings as usual).
    """
    layers = decoder_layers(unwrap(model))
    skipped = [layers[i] for i in range(first)]

    def inject(module, args, kwargs):
        if args:
            return (block_inputs, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": block_inputs}

    handle = layers[first].register_forward_pre_hook(inject, with_kwargs=True)
    try:
        for i in range(first):
            layers[i] = _Passthrough()
        return hidden_at_layer(model, batch, layer)
    finally:
        for i, original in enumerate(skipped):
            layers[i] = original
        handle.remove()


def _pad_rows(rows: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Right-pad per-example (T_i, d) tensors to (B, T, d) matching the batch's padded length."""
    out = torch.zeros(len(rows), like.shape[1], rows[0].shape[-1], dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out.to(like.device)


# ---- the method --------------------------------------------------------------------------------


def module_name_pattern(layers: list[int], modules: list[str]) -> str:
    """Regex for the weight of each module in ``modules`` (dotted names inside a decoder layer) in ``layers``."""
    names = "|".join(str(i) for i in layers)
    targets = "|".join(re.escape(m) for m in modules)
    targets = targets if len(modules) == 1 else f"(?:{targets})"
    return rf"(?:^|\.)layers\.(?:{names})\.{targets}\.weight$"


def _module_list(value, key: str) -> list[str]:
    modules = [value] if isinstance(value, str) else list(value or [])
    if not modules or not all(isinstance(m, str) and m.strip(".") for m in modules):
        raise ConfigError(
            key, f"{value!r} names no module", "give module names inside a decoder layer, e.g. [mlp.down_proj]"
        )
    return [m.strip(".") for m in modules]


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
        self.trainable_modules = _module_list(
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
        _check_layer(m, self.layer)
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
        _check_layer(m, self.layer)
        u = control_vector(m.config.hidden_size, data.seed)
        self.control = self.steering_coeff * u
        self.original = OriginalWeights(m)  # the parameters select_trainable left trainable
        if self.traces is not None:  # before any activation is cached: the trace sets may join the cache
            self._prepare_traces(data)
        self._cache_activations(data)

    def _prepare_traces(self, data) -> None:
        """The model's traces about the forget documents (cached), split into trained and held-out inputs."""
        from runner.methods.base import require_single_process
        from runner.methods.reasoning_traces import (
            generate_traces,
            holdout_split,
            reindex,
            trace_inputs,
            trace_prompts,
        )

        require_single_process(f"{type(self).__name__} with method.traces")
        if data.cache_dir is None or data.tokenizer is None or data.forget_rows is None:
            raise RuntimeError("method.traces needs the job's cache directory, tokenizer and forget rows")
        texts = [r.get("text") or r.get("question", "") + " " + r.get("answer", "") for r in data.forget_rows]
        think_start = getattr(data.fmt, "think_start", None)
        if think_start is None:
            log.info(
                "R²MU traces: the model has no start-of-thinking tag (model.prompt.think_start); the cue ends the prompt"
            )
        prompts = trace_prompts(data.tokenizer, texts, self.traces, think_start)
        identity = data.model_identity or {}
        continuations = generate_traces(
            data.model, data.tokenizer, prompts, self.traces, data.precision, data.cache_dir, identity
        )
        inputs = trace_inputs(data.tokenizer, continuations, self.traces, think_start)
        kept, held = holdout_split(len(inputs), self.traces.holdout, data.seed)
        self.trace_train = reindex([inputs[i] for i in kept])
        self.trace_eval = reindex([inputs[i] for i in held])

    def _activation_sets(self, data) -> list[tuple[str, list[dict], bool]]:
        """(name, examples, whether theta_0's layer-l output is kept) of each set a training step reads."""
        return [("forget", data.forget, False), ("retain", data.retain, True)]

    def _first_trainable_layer(self, model) -> int | None:
        """Lowest decoder layer holding a trainable parameter; None if one lives outside the layers."""
        found = []
        for name, p in model.named_parameters():
            if p.requires_grad:
                hit = re.search(r"(?:^|\.)layers\.(\d+)\.", name)
                if hit is None:
                    return None
                found.append(int(hit.group(1)))
        return min(found) if found else None

    @torch.no_grad()
    def _cache_activations(self, data) -> None:
        m = unwrap(data.model)
        first = self._first_trainable_layer(m)
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
        inputs = _pad_rows(rows, part["input_ids"]).to(dtype)
        return hidden_from_block(model, part, inputs, self.first_trainable, self.layer)

    def _frozen(self, model, part: dict, name: str) -> torch.Tensor:
        """theta_0's layer-l output on ``part``: kept from prepare, or recomputed with the saved weights swapped in."""
        if self._cached(part, name) and name in self.frozen:
            return _pad_rows([self.frozen[name][int(i)] for i in part["index"]], part["input_ids"])
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

    @torch.no_grad()
    def trace_mse(self, model, data) -> float:
        """MSE(h_theta^(l)(x_trace), c * u) over every real token of the held-out trace inputs (one token-weighted
        mean, as the training losses); always the full forward, never the activation cache."""
        from runner.data.qa import collate_qa
        from runner.scoring import autocast

        m = unwrap(model)
        device = next(m.parameters()).device
        was_training = m.training
        m.eval()
        total, count = 0.0, 0
        try:
            for start in range(0, len(self.trace_eval), data.eval_batch_size):
                chunk = [
                    {k: v for k, v in e.items() if k != "index"}
                    for e in self.trace_eval[start : start + data.eval_batch_size]
                ]
                batch = {k: v.to(device) for k, v in collate_qa(chunk, data.pad_id).items()}
                with autocast(data.precision, device):
                    hidden = hidden_at_layer(m, batch, self.layer)
                n = int(batch["attention_mask"].sum())
                total += rmu_forget_loss(hidden, batch["attention_mask"], self.control).item() * n
                count += n
        finally:
            m.train(was_training)
        return total / max(count, 1)
