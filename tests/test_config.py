"""The config tree (conf/) and its validation (runner/config.py): every option composes and builds;
bad input names its key."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from runner import job
from runner.attacks import ClassificationAttack, FinetuneAttack, Gsm8kAttack, RelearnAttack
from runner.benchmarks.base import Benchmark, build_benchmark
from runner.components import build
from runner.coreset import Selector
from runner.coreset.selectors import GradNormSelector, KeywordSelector, LossSelector, ModerateSelector, RandomSelector
from runner.data.qa import PromptFormat
from runner.decoding.base import DecodingStrategy
from runner.decoding.strategies import Decoding, build_decoding
from runner.distributed import Strategy
from runner.distributed.strategies import DDP, ZeRO, ZeRO3Offload
from runner.errors import ConfigError
from runner.methods.base import Method
from runner.models import model_identity
from tests.conftest import CONF_DIR, FIXTURES_DIR, compose_cfg

GROUPS = [
    "model",
    "method",
    "benchmark",
    "coreset",
    "finetune_attack",
    "robustness_attack",
    "distributed",
    "logger",
    "experiment",
    "decoding",
    "task",
]
DISTILL_GROUPS = ["traces", "condense"]  # exist only in a distillation job (task=distill)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes(group, option):
    cfg = compose_cfg(f"{group}={option}", "seed=7")
    container = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert container["seed"] == 7
    # every group's own seed follows the job's (`${seed}`): a sweep over seed= reseeds every stage
    followers = {g: node["seed"] for g, node in container.items() if isinstance(node, dict) and "seed" in node}
    pinned = {"cyclicreflex_math500": {"decoding": 42}}.get(option, {}) if group == "experiment" else {}
    assert followers == {g: pinned.get(g, 7) for g in followers} and "decoding" in followers, followers
    if group == "method" and option == "none":
        assert cfg.method is None  # an evaluation-only job
    elif group == "method":
        assert cfg.method._target_.startswith("runner.methods.")
    if group == "model":
        assert cfg.model.name == option
        assert cfg.model.trust_remote_code is False
        assert "{question}" in cfg.model.prompt.question


@pytest.mark.parametrize("group,option", [(g, o) for g in DISTILL_GROUPS for o in _options(g)])
def test_every_distillation_option_composes_under_task_distill(group, option):
    cfg = compose_cfg("task=distill", f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert cfg.task == "distill" and cfg.method is None and cfg[group].name == option
    assert "traces" not in compose_cfg() and "condense" not in compose_cfg()  # an unlearning job has neither


def test_groups_have_the_options_later_work_builds_on():
    for group in ("coreset", "finetune_attack", "robustness_attack", "distributed", "logger"):
        assert "none" in _options(group)
    assert {"smollm2-135m", "tiny", "llama2-7b-chat", "zephyr-7b-beta", "phi-1.5"} <= set(_options("model"))
    assert {"ga", "graddiff", "npo"} <= set(_options("method"))


def test_default_is_the_embedded_offline_job():
    cfg = compose_cfg()
    assert cfg.model.name == "smollm2-135m" and cfg.model.source == "gguf"
    assert cfg.benchmark.name == "tofu" and cfg.benchmark.source == "local"
    assert cfg.benchmark.forget_split == "forget01"
    assert cfg.method._target_ == "runner.methods.npo.NPO"


def test_paper_experiment_sets_paper_hyperparameters():
    cfg = compose_cfg("experiment=tofu_npo_llama2")
    assert cfg.model.id == "meta-llama/Llama-2-7b-chat-hf"
    assert cfg.unlearn.learning_rate == 1e-5 and cfg.method.beta == 0.1
    assert cfg.benchmark.subset is None and cfg.benchmark.forget_split == "forget10"


def _status(run_dir):
    path = run_dir / "results.json"
    return json.loads(path.read_text())["status"] if path.exists() else None


@pytest.mark.parametrize(
    "override,key",
    [
        ("unlearn.learning_rate=-1e-5", "unlearn.learning_rate"),
        ("unlearn.epochs=0", "unlearn.epochs"),
        ("benchmark.finetune.learning_rate=0", "benchmark.finetune.learning_rate"),
        ("benchmark.forget_split=forget07", "benchmark.forget_split"),
        ("benchmark.forget_split=forget05", "benchmark.source"),  # not shipped offline
        ("precision=fp8", "precision"),
    ],
)
def test_bad_input_names_the_key_and_leaves_no_completed_result(tiny_cfg, tmp_path, override, key):
    with pytest.raises(ConfigError) as err:
        job.run(tiny_cfg(override), tmp_path)
    assert f"`{key}`" in str(err.value) and "Fix:" in str(err.value)
    assert _status(tmp_path) in (None, "failed")


def test_every_experiment_and_method_instantiates():
    from pathlib import Path

    from tests.conftest import CONF_DIR

    evaluation_only = {"reasoning_smoke_tiny", "reflection_demo_smollm2", "cyclicreflex_math500", "none"}
    for exp in sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml")):
        method = build(compose_cfg(f"experiment={exp}").method, Method, "method")
        assert (method is None) == (exp in evaluation_only), exp
    for name in sorted(p.stem for p in (Path(CONF_DIR) / "method").glob("*.yaml")):
        node = compose_cfg(f"method={name}", *METHOD_INPUTS.get(name, [])).method
        assert (build(node, Method, "method") is None) == (name in evaluation_only), name


# ---- every option of the component groups builds through the one builder ---------------------------


def _target_class(node) -> type:
    module, _, name = str(node._target_).rpartition(".")
    return getattr(importlib.import_module(module), name)


# the file a method cannot run without (its config leaves it to the user)
METHOD_INPUTS = {"dpo": ["method.alternates=tests/fixtures/tofu_forget01_alternates.jsonl"]}


@pytest.mark.parametrize("option", _options("method"))
def test_every_method_option_builds_the_class_it_names(option):
    node = compose_cfg(f"method={option}", *METHOD_INPUTS.get(option, [])).method
    method = build(node, Method, "method")
    if option == "none":
        assert method is None  # an evaluation-only job
    else:
        assert isinstance(method, Method) and type(method) is _target_class(node)


@pytest.mark.parametrize("option", _options("decoding"))
def test_every_decoding_option_builds_the_class_it_names(option):
    node = compose_cfg("method=none", "benchmark=math500", f"decoding={option}", "seed=3").decoding
    strategy = build_decoding(node)
    assert isinstance(strategy, Decoding) and isinstance(strategy, DecodingStrategy)
    assert type(strategy) is _target_class(node)
    assert strategy.seed == 3 and strategy.n == node.get("n", 1)


# how each benchmark option is built offline: the shipped copies, or the fixtures (tests/fixtures/hub);
# the reasoning ones with the tiny model's one-token reflection words, as experiment=reasoning_smoke_tiny
REASONING_TINY = ["experiment=reasoning_smoke_tiny", "benchmark.reflection_words=[a,e]"]
OFFLINE_BENCHMARKS = {
    "tofu": ["experiment=tofu_smoke_tiny"],
    "wmdp": ["experiment=wmdp_smoke_tiny"],
    "muse": ["experiment=muse_smoke_tiny"],
    "text_loss": ["experiment=task_arithmetic_smoke_tiny"],
    "mmlu": ["experiment=tofu_smoke_tiny", "method=none", "benchmark=mmlu", "benchmark.per_subject=2"],
    "gsm8k": REASONING_TINY,
    "math500": [*REASONING_TINY, "benchmark=math500"],
    **{
        name: [*REASONING_TINY, f"benchmark={name}", f"benchmark.source={FIXTURES_DIR / 'hub'}"]
        for name in ("aime24", "aime25", "amc23")
    },
}


def test_every_benchmark_option_is_built_offline_below():
    assert set(OFFLINE_BENCHMARKS) == set(_options("benchmark"))


@pytest.mark.parametrize("option", sorted(OFFLINE_BENCHMARKS))
def test_every_benchmark_option_builds_the_class_it_names(option, tiny_tokenizer, shared_cache):
    cfg = compose_cfg(*OFFLINE_BENCHMARKS[option], f"paths.cache_dir={shared_cache}")
    assert cfg.benchmark.name == option
    bench = build_benchmark(cfg.benchmark, tiny_tokenizer, PromptFormat.from_cfg(cfg.model.prompt))
    assert isinstance(bench, Benchmark) and type(bench) is _target_class(cfg.benchmark)


@pytest.mark.parametrize("option", _options("model"))
def test_every_model_option_gives_its_prompt_and_cache_identity(option):
    """Models have no ``_target_``: what a config gives before any weights load is the prompt and the identity."""
    cfg = compose_cfg(f"model={option}").model
    fmt = PromptFormat.from_cfg(cfg.prompt)
    rendered = fmt.render("Who wrote it?", "The author.")
    prompt = fmt.render("Who wrote it?")  # the prompt, then the answer after it
    assert "Who wrote it?" in prompt and rendered.startswith(prompt) and "The author." in rendered[len(prompt) :]
    identity = model_identity(cfg)
    assert identity["dtype"] == cfg.dtype
    if cfg.source == "hub":
        assert identity["hub"] == cfg.id and "/" in cfg.id
    elif cfg.source == "tiny":
        assert identity["tiny"] == dict(cfg.tiny)
    else:
        assert cfg.source == "gguf" and len(identity["gguf"]) >= 16  # the shipped file's digest


# every option of the component groups, and the class it builds (None: the option asks for no component)
COMPONENTS = {
    "coreset": (Selector, {"gradnorm": GradNormSelector, "keyword": KeywordSelector, "loss": LossSelector,
                           "moderate": ModerateSelector, "random": RandomSelector, "none": None}),
    "finetune_attack": (FinetuneAttack, {"agnews": ClassificationAttack, "gsm8k": Gsm8kAttack,
                                         "mrpc": ClassificationAttack, "relearn": RelearnAttack,
                                         "sst2": ClassificationAttack, "none": None}),
    "distributed": (Strategy, {"ddp": DDP, "zero1": ZeRO, "zero2": ZeRO, "zero3": ZeRO,
                               "zero3_offload": ZeRO3Offload, "none": None}),
}  # fmt: skip
# what a constructor gets from the job rather than from the config
RUNTIME = {"coreset": {"seed": 5}}


@pytest.mark.parametrize("group,option", [(g, o) for g in COMPONENTS for o in _options(g)])
def test_every_component_option_builds_through_the_one_builder(group, option):
    kind, expected = COMPONENTS[group]
    assert option in expected, f"conf/{group}/{option}.yaml is new: add the class it builds to COMPONENTS"
    built = build(compose_cfg(f"{group}={option}").get(group), kind, group, **RUNTIME.get(group, {}))
    if expected[option] is None:
        assert built is None
    else:
        assert type(built) is expected[option] and isinstance(built, kind)
        assert getattr(built, "name", option) == option  # the option's name, as records and methods know it


@pytest.mark.parametrize("model", ["llama8b", "qwen14b"])
def test_r2mu_and_its_rmu_baseline_share_every_setting_but_the_method(model):
    r2mu, rmu = compose_cfg(f"experiment=r2mu_wmdp_r1_{model}"), compose_cfg(f"experiment=rmu_wmdp_r1_{model}")
    assert r2mu.method._target_ == "runner.methods.r2mu.R2MU" and rmu.method._target_ == "runner.methods.rmu.RMU"
    for key in ("seed", "precision", "model", "benchmark", "unlearn", "eval"):
        assert r2mu[key] == rmu[key], key
    for key in ("layer", "trainable_layers", "trainable_modules", "steering_coeff", "alpha"):
        assert r2mu.method[key] == rmu.method[key], key
    # the same traces measured: equal settings once the unset ones take their defaults
    from runner.methods.reasoning_traces import TraceSettings

    shared = [TraceSettings.from_options(c.method.traces, "method.traces") for c in (r2mu, rmu)]
    assert shared[0] == shared[1]
    assert (r2mu.method.alpha, r2mu.method.lam, r2mu.unlearn.learning_rate, r2mu.unlearn.max_steps) == (
        1.7,
        1.0,
        7.5e-5,
        500,
    )
    assert r2mu.method.cot.name == "limo" and r2mu.benchmark.forget_corpora == ["bio"] and r2mu.seed == 42


# the diffusion family's groups exist only in a diffusion job (task=diffusion_attack)
DIFFUSION_GROUPS = ["diffusion_model", "concept", "attack", "defense", "detector"]
DIFFUSION_REQUIRED = {  # what an option leaves to the user: named before anything runs
    ("diffusion_model", "local"): "diffusion_model.unet.id",
    ("concept", "nudity"): "concept.prompts_file",
    ("detector", "style"): "detector.model_id",
}


@pytest.mark.parametrize("group,option", [(g, o) for g in DIFFUSION_GROUPS for o in _options(g)])
def test_every_diffusion_option_composes_and_passes_its_checks(group, option):
    from runner.job_kinds import validate

    cfg = compose_cfg("task=diffusion_attack", f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.task == "diffusion_attack" and cfg.model is None and cfg.benchmark is None
    required = DIFFUSION_REQUIRED.get((group, option))
    if required is None:
        validate(cfg)  # builds the attack, defence and detector: every option's class takes its options
    else:
        with pytest.raises(ConfigError) as err:
            validate(cfg)
        assert err.value.key == required
    assert "diffusion_model" not in compose_cfg()  # an unlearning job has none of them
