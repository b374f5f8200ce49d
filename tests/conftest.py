"""Shared fixtures: compose the real configs and shrink them to the tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = str(ROOT / "conf")
TINY = ["experiment=tofu_smoke_tiny"]


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def pytest_configure(config):
    """Under ``make test``'s parallel workers, each worker's torch (and each job a test starts, through
    ``threads: auto``) takes its share of the cores: OpenMP threads spinning on a core another worker
    holds made steps many times slower (runner/threads.py)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        from runner.threads import usable_cores

        torch.set_num_threads(max(1, usable_cores() // workers))
        os.environ.setdefault("RUNNER_PARALLEL_JOBS", str(workers))


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the session: the tiny model and its reference models are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny_cfg(shared_cache):
    def make(*overrides: str):
        return compose_cfg(*TINY, f"paths.cache_dir={shared_cache}", *overrides)

    return make


# the random test models' sizes: a few thousand parameters, two heads sharing nothing
TINY_SIZES = {
    "vocab_size": 50,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32,
}


def _random_model(config_cls, model_cls, config: dict):
    import torch

    torch.manual_seed(0)
    return model_cls(config_cls(**{**TINY_SIZES, **config}))


def random_llama(**config):
    """A seeded random-weight LlamaForCausalLM for unit tests: tiny defaults, any LlamaConfig field overridable."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return _random_model(LlamaConfig, LlamaForCausalLM, config)


def random_qwen2(**config):
    """The same for Qwen2 (biases on the attention projections: parameter positions differ from Llama's)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return _random_model(Qwen2Config, Qwen2ForCausalLM, config)


def load_tiny(cache_dir: Path) -> tuple:
    """(cfg, model, tokenizer) of the tiny test model (experiment=tofu_smoke_tiny), built in ``cache_dir``."""
    from runner.models import load_model

    cfg = compose_cfg(*TINY, f"paths.cache_dir={cache_dir}")
    return (cfg, *load_model(cfg.model, Path(cfg.paths.cache_dir)))


def tiny_parts(tiny: tuple, model=None) -> dict:
    """The model (``tiny``'s, or ``model``), tokenizer and prompt format an attack's or probe's context takes."""
    from runner.data.qa import PromptFormat

    cfg, own, tokenizer = tiny
    return {"model": model or own, "tokenizer": tokenizer, "fmt": PromptFormat.from_cfg(cfg.model.prompt)}


@pytest.fixture(scope="session")
def smollm2(shared_cache):
    """(model, tokenizer) of the real default model, SmolLM2-135M-Instruct, dequantised once per session."""
    from runner.models import load_model

    return load_model(compose_cfg().model, shared_cache)


# --- one step of an unlearning method on a toy Llama (tests/methods) ------------------------------

TOY_PAD, TOY_BOS, TOY_EOS = 0, 1, 2
TOY_FORGET_ROWS = [
    {"question": "Who wrote Alpha?", "answer": "Basil Hart"},
    {"question": "Where was Cyra born?", "answer": "Oslo"},
    {"question": "What genre?", "answer": "Crime fiction novels"},
    {"question": "Awards won?", "answer": "None"},
]
TOY_RETAIN_ROWS = [
    {"question": "Who is Dana?", "answer": "A poet"},
    {"question": "Where does Eli live?", "answer": "In Lima, Peru"},
    {"question": "Fay's job?", "answer": "Chemist"},
]


def toy_encode(rows: list[dict]) -> list[dict]:
    """Characters to ids 3..49; prompt masked out of the labels, EOS closes the answer."""
    from runner.data.qa import IGNORE

    def ids(text: str, n: int) -> list[int]:
        return [3 + ord(c) % 47 for c in text[:n]]

    out = []
    for i, r in enumerate(rows):
        prompt = [TOY_BOS] + ids(r["question"], 8)
        answer = ids(r["answer"], 6) + [TOY_EOS]
        out.append({"input_ids": prompt + answer, "labels": [IGNORE] * len(prompt) + answer, "index": i})
    return out


@pytest.fixture(scope="module")
def toy_llama():
    return random_llama(
        max_position_embeddings=64, pad_token_id=TOY_PAD, bos_token_id=TOY_BOS, eos_token_id=TOY_EOS
    ).train()


def toy_data(model):
    """The toy forget and retain rows as a method's ``UnlearnData``."""
    from runner.methods.base import UnlearnData

    return UnlearnData(
        model=model,
        forget=toy_encode(TOY_FORGET_ROWS),
        retain=toy_encode(TOY_RETAIN_ROWS),
        encode=toy_encode,
        pad_id=TOY_PAD,
        eval_batch_size=2,
        precision="fp32",
        seed=3,
        forget_rows=TOY_FORGET_ROWS,
    )


def toy_batch(data, forget_ids=(3, 0, 2), retain_ids=(1, 2, 0)) -> dict:
    from runner.training import collate_pairs

    pairs = [{"forget": data.forget[f], "retain": data.retain[r]} for f, r in zip(forget_ids, retain_ids, strict=True)]
    return collate_pairs(data.pad_id)(pairs)


def method_from_yaml(name: str):
    """``conf/method/<name>.yaml`` built through the one builder."""
    from runner.components import build
    from runner.methods.base import Method

    return build(compose_cfg(f"method={name}").method, Method, "method")


# --- the offline WMDP and MUSE fixtures (tests/fixtures/hub) --------------------------------------

FIXTURES_DIR = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def tiny_tokenizer(shared_cache):
    """The tiny model's tokenizer (the model is built once per session in the shared cache)."""
    from runner.models import load_model

    return load_model(compose_cfg("model=tiny").model, shared_cache)[1]


def experiment_cfg(experiment: str, cache, *overrides):
    return compose_cfg(f"experiment={experiment}", f"paths.cache_dir={cache}", *overrides)


def build_offline(cls, tokenizer, cache, experiment, *overrides):
    """The benchmark of ``experiment`` (a ``*_smoke_tiny`` one reads the fixtures), checked to be a ``cls``."""
    from runner.benchmarks.base import build_benchmark
    from runner.data.qa import PromptFormat

    cfg = experiment_cfg(experiment, cache, *overrides)
    bench = build_benchmark(cfg.benchmark, tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
    assert type(bench) is cls
    return bench


@pytest.fixture
def muse_offline(tiny_tokenizer, shared_cache):
    """The MUSE benchmark of experiment=muse_smoke_tiny (the fixtures) under ``overrides``."""
    from runner.benchmarks.muse import MuseBenchmark

    def make(*overrides: str):
        return build_offline(MuseBenchmark, tiny_tokenizer, shared_cache, "muse_smoke_tiny", *overrides)

    return make


# RMU's settings for the tiny model's two layers, strong enough to move it in a few steps
RMU_TINY_OPTIONS = ["method.layer=1", "method.trainable_layers=[0,1]", "method.steering_coeff=20", "method.alpha=10"]
RMU_TINY = ["method=rmu", *RMU_TINY_OPTIONS]
# the methods a benchmark's pipeline test runs on the tiny model: a gradient method, a preference one, RMU
PIPELINE_METHODS = {"ga": ["method=ga"], "npo": ["method=npo"], "rmu": RMU_TINY}


def run_report(*args: str, timeout: int = 300):
    """``python -m runner.report ARGS`` from the project root, its output captured as text."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "runner.report", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def hub_copy(tmp_path) -> Path:
    """A writable copy of the fixture hub layout, to break."""
    import shutil

    return Path(shutil.copytree(FIXTURES_DIR / "hub", tmp_path / "hub"))


def rewrite_rows(path: Path, change) -> None:
    import json

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(change(r)) + "\n" for r in rows))


@pytest.fixture
def reasoning_tiny_cfg(shared_cache):
    """Like ``tiny_cfg`` for experiment=reasoning_smoke_tiny: an evaluation-only GSM8K job on the tiny model."""

    def make(*overrides: str):
        return compose_cfg("experiment=reasoning_smoke_tiny", f"paths.cache_dir={shared_cache}", *overrides)

    return make
