"""A run's unlearned weights, kept in its directory (``save_model=``), and loading them back in one call.

- ``trainable``: only the parameters that trained, as ``model/trainable.safetensors``. The rest
  of the model is the base's (every parameter outside ``model.trainable_layers`` and the method's
  own choice is the base's), and the base is named in ``model/model.json`` by its config and
  identity. A 7B run that trained a few layers stays small on disk.
- ``full``: the whole model and its tokenizer, in transformers' own layout (``save_pretrained``).

The weights are saved right after unlearning, before any fine-tuning attack changes them.
``load_run_model(run_dir)`` rebuilds the model. For ``trainable`` it first loads the base, and it
refuses, with a clear error, a base that is not available or whose identity has changed since
the run (another GGUF file, another hub revision).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf
from safetensors.torch import save_file

from runner.cache import safetensors_problem, write_json_atomic
from runner.errors import ConfigError, environment_errno
from runner.models import load_model, load_state, model_identity, set_trainable

CHOICES = ("none", "trainable", "full")
DIRECTORY = "model"
STATE_FILE = "trainable.safetensors"


def check(how: str) -> None:
    if how not in CHOICES:
        raise ConfigError("save_model", f"`{how}` is not a choice", f"use one of {', '.join(CHOICES)}")


def save_run_model(model, tokenizer, run_dir: Path, how: str, model_cfg, start: str | None = None) -> Path | None:
    """Keep ``model``'s weights in ``run_dir/model`` as ``how`` says; the directory, or None for ``none``.

    ``start``: the safetensors file of the model unlearning started from (TOFU's fine-tuned target, a
    cache entry), recorded in ``model.json``; None where the loaded base itself was the start.
    """
    check(how)
    if how == "none":
        return None
    out = Path(run_dir) / DIRECTORY
    out.mkdir(parents=True, exist_ok=True)
    trainable = changed_parameters(model, model_cfg.get("trainable_layers"))
    try:
        if how == "trainable":
            params = dict(model.named_parameters())
            save_file({n: params[n].detach().cpu().contiguous() for n in trainable}, str(out / STATE_FILE))
        else:
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
    except Exception as exc:
        code = environment_errno(exc)
        if code is None:
            raise
        # safetensors reports a full disk without the file: name the directory that could not be written
        raise OSError(code, os.strerror(code), str(out)) from exc
    description = {
        "save_model": how,
        "base": {"config": OmegaConf.to_container(model_cfg, resolve=True), "identity": model_identity(model_cfg)},
        "trainable": trainable,
        "start": start,  # the model unlearning started from: a partial state over the base; null: the base
    }
    write_json_atomic(out / "model.json", description)  # last: a directory without it is incomplete
    return out


def changed_parameters(model, trainable_layers) -> list[str]:
    """Every parameter that may differ from the base: those the job trained (``model.trainable_layers``,
    which the TOFU / MUSE target fine-tune also trained) and those the method trained last (RMU picks a
    few matrices of its own)."""
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    finetuned = set(set_trainable(model, trainable_layers))
    for n, p in model.named_parameters():  # leave the model as it was
        p.requires_grad_(flags[n])
    return [n for n in flags if flags[n] or n in finetuned]


def load_run_model(run_dir: str | Path, cache_dir: str | Path | None = None):
    """(model, tokenizer) as the run left them after unlearning; ``cache_dir`` holds the base (the run's own
    cache by default)."""
    run_dir, info = saved_weights(run_dir)
    model_cfg = OmegaConf.create(info["base"]["config"])
    if cache_dir is None:
        cache_dir = _run_cache_dir(run_dir)
    if info["save_model"] == "full":
        from runner.models import _from_pretrained

        return _from_pretrained(str(run_dir / DIRECTORY), model_cfg)
    try:
        identity = model_identity(model_cfg)
    except (OSError, ConfigError) as exc:
        raise ConfigError(
            "save_model",
            f"the base model this run's weights apply to is not available ({exc})",
            "install or download the base named in model/model.json, or keep full weights (save_model=full)",
        ) from exc
    if identity != info["base"]["identity"]:
        raise ConfigError(
            "save_model",
            f"the base model has changed since the run: {identity} now, {info['base']['identity']} then",
            "load the run against the base it was unlearned from (or rerun it with save_model=full)",
        )
    model, tokenizer = load_model(model_cfg, cache_dir)
    load_state(model, run_dir / DIRECTORY / STATE_FILE)
    return model, tokenizer


def saved_weights(run_dir: str | Path, key: str = "save_model") -> tuple[Path, dict]:
    """The directory holding a run's kept weights (a reused result points at the run that made them) and
    its ``model.json``; a ConfigError naming ``key`` (the setting that gave the run) where it kept none, or where
    a file of them is damaged (checked here, before anything loads: one line, not a loader's traceback)."""
    weights = _weights_dir(Path(run_dir), key)
    described = weights / DIRECTORY / "model.json"
    if not described.is_file():
        raise ConfigError(
            key,
            f"{run_dir} kept no weights (no {DIRECTORY}/model.json)",
            "run the job again with save_model=trainable (or full)",
        )
    info = read_run_json(described, key)
    for path in sorted((weights / DIRECTORY).glob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem:
            raise ConfigError(key, f"{path} is damaged ({problem})", _RERUN)
    if info.get("save_model") == "trainable" and not (weights / DIRECTORY / STATE_FILE).is_file():
        raise ConfigError(key, f"{weights / DIRECTORY / STATE_FILE} is missing", _RERUN)
    return weights, info


_RERUN = "run the job that wrote it again (with save_model=trainable or full), or leave that run out"


def read_run_json(path: Path, key: str) -> dict:
    """A JSON object a finished run wrote (``results.json``, ``model.json``); a ConfigError naming ``key`` and the
    file when it is truncated, not JSON or not an object."""
    from runner.cache_schema import read_json

    value, problem = read_json(path)
    if problem is None and not isinstance(value, dict):
        problem = f"holds {type(value).__name__}, not an object"
    if problem:
        raise ConfigError(key, f"{path} is damaged ({problem})", _RERUN)
    return value


def _weights_dir(run_dir: Path, key: str = "save_model") -> Path:
    """The run directory that holds the weights: a job answered by an identical finished one (its
    results.json copy says ``reused_from``) points at that run's directory."""
    if (run_dir / DIRECTORY / "model.json").is_file():
        return run_dir
    results = run_dir / "results.json"
    reused = read_run_json(results, key).get("reused_from") if results.is_file() else None
    return Path(reused).parent if isinstance(reused, str) and reused else run_dir


def _run_cache_dir(run_dir: Path) -> Path:
    results = run_dir / "results.json"
    if results.is_file():
        config = read_run_json(results, "analysis.runs").get("config", {})
        cache = (config.get("paths") or {}).get("cache_dir")
        if cache:
            return Path(cache)
    return Path("outputs/cache")
