"""Reference models given, not built: ``benchmark.target`` and ``benchmark.retain`` (TOFU, MUSE).

Each is a hub id (``open-unlearning/tofu_Llama-3.2-1B-Instruct_full``) or a local directory saved
with ``save_pretrained``; null (the default) keeps the runner's own fine-tuning. ``model=`` still
names the family: its tokenizer, prompt format and trainable layers; the given checkpoint supplies
the weights. A retain model's *evaluation* can stand in for the model itself: ``benchmark.retain_logs``
(runner/retain_logs.py).

What is refused at config check, before any model loads:
- a value that reads as a path (``/``, ``.``, ``~``) but is no model directory;
- a value that is neither a directory nor a hub id (``owner/name``);
- a ready target without a retain model or retain log: the retain model would otherwise be
  fine-tuned from the loaded weights, which are then the target's, not the base model's.

A retain model and a retain log may come together: the model is evaluated and shown as the
``retain`` row, the log is the reference Forget Quality and PrivLeak compare against (the numbers
a user chose to compare with, e.g. open-unlearning's published ones).
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig

from runner.errors import ConfigError
from runner.inputs import Input, fingerprint

KINDS = ("target", "retain")
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
OFFLINE_FIX = "offline, point it at a local directory saved with save_pretrained (model and config.json)"


def ready_models(bench_cfg) -> dict[str, str]:
    """``{kind: hub id or directory}`` for the reference models the config gives."""
    out = {}
    for kind in KINDS:
        value = bench_cfg.get(kind) if isinstance(bench_cfg, (dict, DictConfig)) else None
        if value is not None:
            out[kind] = str(value)
    return out


def given(bench_cfg) -> set[str]:
    """The reference kinds a job does not fine-tune: those given ready, and the retain model when its log is given."""
    logs = bench_cfg.get("retain_logs") if isinstance(bench_cfg, (dict, DictConfig)) else None
    return set(ready_models(bench_cfg)) | ({"retain"} if logs else set())


def check_spec(key: str, spec: str) -> str:
    """``dir`` or ``hub``; a value that is neither is refused, naming ``key``."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(
                key,
                f"`{spec}` is a directory without config.json, so not a saved model",
                f"save it with save_pretrained; {OFFLINE_FIX}",
            )
        return "dir"
    if spec.startswith(("/", ".", "~")) or path.exists():
        raise ConfigError(key, f"no model directory at `{spec}`", "give an existing directory or a hub id (owner/name)")
    if not HUB_ID.fullmatch(spec):
        raise ConfigError(key, f"`{spec}` is neither a local directory nor a hub id (owner/name)", OFFLINE_FIX)
    return "hub"


def check_config(cfg: DictConfig) -> None:
    """The checks that need no model: each given reference, and which combinations make sense."""
    bench = cfg.get("benchmark")
    if bench is None:
        return
    given = ready_models(bench)
    for kind, spec in given.items():
        check_spec(f"benchmark.{kind}", spec)
    logs = bench.get("retain_logs")
    if given and bench.get("build_references") is False:
        kind = next(iter(given))
        raise ConfigError(
            f"benchmark.{kind}",
            "build_references=false evaluates the loaded model as the target and builds no references",
            f"set benchmark.build_references=true with benchmark.{kind}, or drop benchmark.{kind}",
        )
    if "target" in given and "retain" not in given and logs is None:
        raise ConfigError(
            "benchmark.retain",
            "a ready target needs a ready retain model or a retain log: a retain model built here would be "
            "fine-tuned from the loaded weights, which are the target's",
            "set benchmark.retain (hub id or directory) or benchmark.retain_logs (an evaluation file of the retain model)",
        )
    if logs is not None:
        from runner.retain_logs import read_retain_logs

        read_retain_logs(str(logs), bench)


def identity(spec: str) -> dict:
    """What determines a given checkpoint's weights: its hub id, or its directory's file listing."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return {"dir": str(path.resolve()), "files": fingerprint(Input.file("benchmark", path))}
    return {"hub": spec}


def inputs(bench_cfg) -> list[Input]:
    """Local checkpoints and the retain log, so that their content enters the job key (runner/inputs.py)."""
    out = [Input.file(f"benchmark.{k}", s) for k, s in ready_models(bench_cfg).items() if Path(s).expanduser().is_dir()]
    logs = bench_cfg.get("retain_logs")
    if logs is not None:
        out.append(Input.file("benchmark.retain_logs", str(logs), format="bytes"))
    return out


def load_ready(kind: str, spec: str, model_cfg, tokenizer):
    """The checkpoint ``spec`` as a model of ``model_cfg``'s dtype, in eval mode, checked against ``tokenizer``."""
    from transformers import AutoModelForCausalLM

    from runner.models import DTYPES
    from runner.packing import use_packed_attention

    key = f"benchmark.{kind}"
    kwargs = {"trust_remote_code": bool(model_cfg.trust_remote_code)}
    try:
        model = AutoModelForCausalLM.from_pretrained(spec, dtype=DTYPES[model_cfg.dtype], **kwargs)
    except OSError as exc:
        raise ConfigError(
            key,
            f"cannot load the {kind} model `{spec}` ({exc.__class__.__name__}: {str(exc).splitlines()[0]})",
            f"check the hub id and the network (gated models need `huggingface-cli login`); {OFFLINE_FIX}",
        ) from exc
    rows = model.get_input_embeddings().num_embeddings
    if rows < len(tokenizer):
        raise ConfigError(
            key,
            f"the {kind} model `{spec}` has {rows} token embeddings, fewer than the {len(tokenizer)} tokens of "
            f"model={model_cfg.name}'s tokenizer",
            "set model= to the family the checkpoint was fine-tuned from",
        )
    use_packed_attention(model)
    model.eval()
    return model


# ---- in a job -------------------------------------------------------------------------------------


def load_job_model(cfg, cache_dir):
    """(model, tokenizer) a job starts from: the ready target where ``benchmark.target`` gives one (with
    ``model=``'s tokenizer), else ``model=`` itself."""
    from runner.models import load_model, load_tokenizer

    target = ready_models(cfg.get("benchmark") or {}).get("target")
    if target is None:
        return load_model(cfg.model, cache_dir)
    tokenizer = load_tokenizer(cfg.model, cache_dir)
    return load_ready("target", target, cfg.model, tokenizer), tokenizer


def job_model_identity(cfg) -> dict:
    """What determines the weights a job starts from: part of every cache key built on them."""
    from runner.models import model_identity

    base = model_identity(cfg.model)
    target = ready_models(cfg.get("benchmark") or {}).get("target")
    return base if target is None else {**base, "target": identity(target)}


def evaluate_ready(kind: str, cfg, bench, eval_key: str, cache_dir: Path, evaluate) -> dict:
    """``evaluate(model)`` of the ready ``kind`` model, loaded on this device for it alone; cached by its identity."""
    from runner import distributed
    from runner.cache import content_key
    from runner.finetuned import cached_json

    spec = bench.ready_models[kind]
    key = content_key({"ready": identity(spec), "dtype": cfg.model.dtype, "eval": eval_key})

    def compute() -> dict:
        model = load_ready(kind, spec, cfg.model, bench.tokenizer).to(distributed.device())
        return evaluate(model)

    return cached_json(Path(cache_dir) / "evaluations" / f"{key}.json", compute, f"the {kind} model {spec}")


def record_entry(bench) -> dict:
    """What the record says about the references a job was given (empty when it built its own)."""
    out = {f"{kind}_model": spec for kind, spec in bench.ready_models.items()}
    if bench.retain_log is not None:
        out["retain_logs"] = {"path": bench.retain_log.path, "format": bench.retain_log.format}
    return out
