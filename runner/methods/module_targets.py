"""Which weights a representation method trains, named by module inside a decoder layer (``mlp.down_proj``),
never by parameter position: a position lands on another matrix in a model whose attention has biases (Qwen2)."""

from __future__ import annotations

import re

from runner.errors import ConfigError


def module_name_pattern(layers: list[int], modules: list[str]) -> str:
    """Regex for the weight of each module in ``modules`` (dotted names inside a decoder layer) in ``layers``."""
    names = "|".join(str(i) for i in layers)
    targets = "|".join(re.escape(m) for m in modules)
    targets = targets if len(modules) == 1 else f"(?:{targets})"
    return rf"(?:^|\.)layers\.(?:{names})\.{targets}\.weight$"


def module_list(value, key: str) -> list[str]:
    modules = [value] if isinstance(value, str) else list(value or [])
    if not modules or not all(isinstance(m, str) and m.strip(".") for m in modules):
        raise ConfigError(
            key, f"{value!r} names no module", "give module names inside a decoder layer, e.g. [mlp.down_proj]"
        )
    return [m.strip(".") for m in modules]


def first_trainable_layer(model) -> int | None:
    """Lowest decoder layer holding a trainable parameter; None if one lives outside the layers."""
    found = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            hit = re.search(r"(?:^|\.)layers\.(\d+)\.", name)
            if hit is None:
                return None
            found.append(int(hit.group(1)))
    return min(found) if found else None
