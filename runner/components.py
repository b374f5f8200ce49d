"""The one builder every kind of component goes through.

A component's config node is ``_target_`` (the class) plus its options; ``null`` means "none"
(no coreset, no attack, no tracker, one process). ``build`` turns a node into an object of the
kind's contract, with the runtime objects the caller passes (a tokenizer, a prompt format...)
added as keyword arguments. A component that holds another (BLUR's base method, a config node
Hydra composes) receives that node as plain options and builds it with ``build`` itself, naming
the contract it needs.

``get_class`` rather than ``hydra.utils.instantiate``: a ConfigError raised in a constructor
reaches the user as it is, not wrapped in Hydra's InstantiationException.
"""

from __future__ import annotations

from typing import Any, TypeVar

from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from runner.errors import ConfigError
from runner.options import check_options

T = TypeVar("T")


def is_none(node: Any) -> bool:
    """A component node that asks for no component: ``null`` (``group=null`` or ``group=none``)."""
    return node is None


def _construct(options: dict, kind: type, key: str, runtime: dict) -> Any:
    target = options.pop("_target_")
    try:
        cls = get_class(target)
    except Exception as exc:  # ImportError, AttributeError, ValueError from a bad dotted path
        raise ConfigError(
            f"{key}._target_", f"cannot import `{target}` ({exc})", "give a class as pkg.module.Class"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, kind)):
        raise ConfigError(
            f"{key}._target_", f"`{target}` is not a {kind.__name__}", f"point it at a {kind.__name__} subclass"
        )
    check_options(cls, options, key)  # the class's declared option ranges (runner/options.py)
    try:
        return cls(**options, **runtime)
    except TypeError as exc:
        if exc.__traceback__.tb_next is not None:  # raised inside the constructor: a bug, not a bad option
            raise
        # the call itself failed to bind: an unknown or a missing option
        raise ConfigError(key, str(exc), f"see the options of the `{key}` config group in conf/") from exc


def build(node: DictConfig | dict | None, kind: type[T], key: str, **runtime: Any) -> T | None:
    """The component ``node`` describes, checked to be a ``kind``; None where the node is null.

    ``key`` is the node's place in the config (``coreset``, ``method.base``) for error messages;
    ``runtime`` are objects the config cannot hold, passed to the constructor by name.
    """
    if is_none(node):
        return None
    options = OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else dict(node)
    if not isinstance(options, dict) or "_target_" not in options:
        raise ConfigError(f"{key}._target_", "the node names no class", f"choose an option of the `{key}` group")
    return _construct(options, kind, key, runtime)
