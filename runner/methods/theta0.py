"""Quantities of theta_0, the model before unlearning, computed once (never a second model copy).

NPO's reference log-probs log pi_ref = log pi_theta0, and the original weights of the layers RMU updates.
"""

from __future__ import annotations

import contextlib

import torch

from runner.methods.base import UnlearnData
from runner.scoring import score_sequences


def forget_reference_logprobs(data: UnlearnData) -> torch.Tensor:
    """log pi_theta0(y|x) of every forget example, indexed by the example's ``index`` field."""
    scores = score_sequences(
        data.model, data.forget, data.pad_id, data.eval_batch_size, data.precision, "reference log-probs"
    )
    logp = torch.zeros(max(e["index"] for e in data.forget) + 1, dtype=torch.float32)
    for example, (nll_sum, _) in zip(data.forget, scores, strict=True):
        logp[example["index"]] = -nll_sum
    return logp


class OriginalWeights:
    """The pre-unlearning values of the trainable parameters only.

    ``with original.active(): ...`` runs the model as theta_0 by swapping the
    parameters' storage (no copy per step); the frozen rest is shared.

    Under DeepSpeed ZeRO-3 a parameter's storage is a placeholder that the engine
    refills from its shards before each module runs, so a swap would be overwritten.
    There, each module holding trainable parameters (a Linear or an Embedding, such as
    RMU's MLP down-projections) instead has its output recomputed from the saved
    weights by a forward hook: the same theta_0 forward, whatever the engine gathers.
    """

    def __init__(self, model: torch.nn.Module):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.saved = [p.detach().clone() for p in self.params]
        # (module, attribute name, index into saved) of each trainable parameter, for the ZeRO-3 path
        index = {id(p): i for i, p in enumerate(self.params)}
        self.owners = [
            (module, name, index[id(p)])
            for module in model.modules()
            for name, p in module.named_parameters(recurse=False)
            if id(p) in index
        ]

    @contextlib.contextmanager
    def active(self):
        with torch.no_grad():
            if any(hasattr(p, "ds_id") for p in self.params):  # partitioned by DeepSpeed ZeRO-3
                with self._recomputed_outputs():
                    yield
                return
            self._swap()
            try:
                yield
            finally:
                self._swap()

    def _swap(self) -> None:
        for i, p in enumerate(self.params):
            current = p.data
            p.data = self.saved[i]
            self.saved[i] = current
        # autocast keeps one low-precision copy per parameter object for the whole autocast
        # region; after swapping storage that copy would be the other weights' cast
        torch.clear_autocast_cache()

    @contextlib.contextmanager
    def _recomputed_outputs(self):
        by_module: dict[int, tuple[torch.nn.Module, dict[str, torch.Tensor]]] = {}
        for module, name, i in self.owners:
            by_module.setdefault(id(module), (module, {}))[1][name] = self.saved[i]
        handles = []
        try:
            for module, saved in by_module.values():
                handles.append(module.register_forward_hook(_theta0_output(module, saved)))
            yield
        finally:
            for handle in handles:
                handle.remove()


def _theta0_output(module: torch.nn.Module, saved: dict[str, torch.Tensor]):
    """A forward hook that replaces ``module``'s output with the output under its saved (theta_0) weights."""
    import torch.nn.functional as F

    from runner.errors import ConfigError

    # only whole modules: their frozen parts may already be released again when the hook runs
    if isinstance(module, torch.nn.Linear) and set(saved) == {"weight"} | (
        {"bias"} if module.bias is not None else set()
    ):

        def hook(mod, args, output):
            x = args[0]
            return F.linear(x, _cast(saved["weight"], x), _cast(saved.get("bias"), x))

        return hook
    if isinstance(module, torch.nn.Embedding) and set(saved) == {"weight"}:

        def hook(mod, args, output):
            return F.embedding(args[0], saved["weight"].to(args[0].device), mod.padding_idx)

        return hook
    raise ConfigError(
        "distributed",
        f"theta_0 passes under ZeRO-3 support trainable Linear / Embedding weights; {type(module).__name__} "
        f"holds trainable {sorted(saved)}",
        "train only Linear weights (e.g. RMU's default down-projections) or use distributed=zero2",
    )


def _cast(t, like):
    return None if t is None else t.to(device=like.device, dtype=like.dtype)
