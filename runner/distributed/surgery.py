"""After a DeepSpeed training stage the model becomes an ordinary module again.

DeepSpeed partitions the model (ZeRO-3), hooks its modules and tags its parameters for the
duration of one ``train`` call. Evaluation, the methods' reference quantities and the caches
must see a plain module under every strategy, so ``release`` gathers the trained weights back
and removes everything the engine added, compared with a ``snapshot`` taken before training.
"""

from __future__ import annotations

import torch


def snapshot(model: torch.nn.Module) -> dict:
    """What the module looked like before training: its parameters' and submodules' attribute names."""
    return {
        "params": {id(p): set(vars(p)) for p in model.parameters()},
        "modules": {id(m): (set(vars(m)), type(m._parameters)) for m in model.modules()},
    }


def release(trainer, model: torch.nn.Module, before: dict, gather: bool = True) -> None:
    """Undo what DeepSpeed did to ``model`` during one ``train`` call.

    Under ZeRO-3 the trained weights are gathered (a collective: every rank calls this)
    and become the parameters' plain storage on every rank. Then the engine removes its
    hooks, and the attributes it attached to parameters and modules are deleted, so the
    next stage (evaluation, a cache save, the next ``train``) sees an ordinary module.
    ``gather=False`` (training failed: the job ends) skips the collective and leaves ZeRO-3 weights empty.
    """
    engine = getattr(trainer, "model_wrapped", None)
    if engine is None or not hasattr(engine, "zero_optimization_stage"):
        return
    params = list(model.parameters())
    if engine.zero_optimization_stage() == 3 and gather:
        import deepspeed

        full = []
        for p in params:  # one at a time: the whole model exists once, beside the shards, never twice
            with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                full.append(p.data.detach().clone())
    else:
        full = [p.data for p in params]
    engine.destroy()
    with torch.no_grad():
        for p, data in zip(params, full, strict=True):
            for attr in set(vars(p)) - before["params"].get(id(p), set()):
                delattr(p, attr)
            p.data = data
            p.grad = None
    for m in model.modules():
        names, params_type = before["modules"].get(id(m), (set(vars(m)), type(m._parameters)))
        for attr in set(vars(m)) - names:
            delattr(m, attr)
        if type(m._parameters) is not params_type:  # ZeRO-3 swaps in a dict that gathers on access
            m._parameters = params_type(dict.items(m._parameters))
    trainer.model_wrapped = trainer.deepspeed = trainer.optimizer = trainer.lr_scheduler = None
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # else the next from_pretrained would build a partitioned model
    try:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()  # the next stage may use another ZeRO stage
    except ImportError:  # pragma: no cover
        pass
