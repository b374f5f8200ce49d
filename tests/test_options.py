"""The one numeric check (runner/options.py), and every component's declared option ranges read at config
validation: a NaN, an infinity, text or an out-of-range value is refused before any stage, naming the key."""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from runner.errors import ConfigError
from runner.job_kinds import validate
from runner.options import COUNT, FRACTION, POSITIVE, Choice, Range, check_number, declared_ranges
from tests.conftest import CONF_DIR, TINY, compose_cfg

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    "allowed,value,ok",
    [
        (POSITIVE, 1e-5, True),
        (POSITIVE, 0, False),  # > 0: the bound itself is refused
        (POSITIVE, NAN, False),  # every comparison with NaN is false: `value <= 0` let it through
        (POSITIVE, INF, False),
        (POSITIVE, -INF, False),
        (POSITIVE, "1e-5", False),  # text where a number belongs
        (POSITIVE, True, False),  # a flag is not a number
        (POSITIVE, None, False),
        (Range(low=0, optional=True), None, True),
        (Range(low=0), 0, True),  # >= 0: the bound is allowed
        (Range(low=0), -1e-12, False),
        (COUNT, 3, True),
        (COUNT, 3.0, False),  # whole numbers are ints: 3.0 would be a silent cast
        (COUNT, 0, False),
        (FRACTION, 1, True),  # (0, 1]
        (FRACTION, 1.0000001, False),
        (FRACTION, 0.0, False),
        (Range(low=0, high=1, high_open=True), 1, False),  # [0, 1)
        (Range(), -3.5, True),  # any finite number
        (Range(), NAN, False),
        (Range(), [1.0], False),
    ],
)
def test_the_numeric_check(allowed, value, ok):
    assert allowed.accepts(value) is ok
    if ok:
        check_number("some.key", value, allowed)
    else:
        with pytest.raises(ConfigError) as err:
            check_number("some.key", value, allowed)
        assert err.value.key == "some.key" and repr(value) in str(err.value) and "Fix:" in str(err.value)


def test_the_message_says_the_range_and_the_fix():
    with pytest.raises(ConfigError) as err:
        check_number("method.beta", NAN, Range(low=0, low_open=True, example="0.1"))
    assert str(err.value) == "config key `method.beta`: must be a finite number > 0, got nan. Fix: set method.beta=0.1"
    with pytest.raises(ConfigError, match=r"must be a whole number in \[1, 8\) or null"):
        check_number("k", 8, Range(low=1, high=8, high_open=True, whole=True, optional=True))
    with pytest.raises(ConfigError, match="`forget07` is not one of forget01, forget05"):
        Choice(("forget01", "forget05")).check("benchmark.forget_split", "forget07")


# the jobs the bad values are laid over (composed once each): every kind of component appears in one
SETUPS = {
    "tofu": TINY,
    "wmdp": ["experiment=wmdp_smoke_tiny"],
    "muse": ["experiment=muse_smoke_tiny"],
    "simnpo": [*TINY, "method=simnpo"],
    "wga": [*TINY, "method=wga"],
    "undial": [*TINY, "method=undial"],
    "idkdpo": [*TINY, "method=idkdpo"],
    "graddiff": [*TINY, "method=graddiff"],
    "rmu": [*TINY, "method=rmu", "method.layer=1"],
    "r2mu": [*TINY, "method=r2mu", "method.layer=1"],
    "blur": [*TINY, "method=blur"],
    "ilu": [*TINY, "method=ilu"],
    "task_vector": [*TINY, "method=task_vector"],
    "coreset": [*TINY, "coreset=gradnorm"],
    "keyword": [*TINY, "coreset=keyword"],
    "relearn": [*TINY, "finetune_attack=relearn"],
    "cyclicreflex": ["method=none", "benchmark=math500", "decoding=cyclicreflex"],
    "s1": ["method=none", "benchmark=math500", "decoding=s1"],
    "tip": ["method=none", "benchmark=math500", "decoding=tip"],
    "distill": ["task=distill", "condense=epic"],
    "trace": ["task=analyse", "analysis=trace"],
    "connectivity": ["task=analyse", "analysis=connectivity"],
    "diffusion": ["task=diffusion_attack", "defense=subspace"],
}
BAD = [  # (setup, key, value): each refused by validate, naming the key
    # the trainer blocks and the job's own numbers (issue 26 item 6)
    ("tofu", "unlearn.learning_rate", NAN),
    ("tofu", "unlearn.learning_rate", INF),
    ("tofu", "unlearn.learning_rate", "fast"),
    ("tofu", "unlearn.warmup_ratio", NAN),
    ("tofu", "unlearn.epochs", NAN),
    ("tofu", "unlearn.epochs", -INF),
    ("tofu", "unlearn.max_weight_norm_ratio", NAN),  # NaN turned the collapse check off
    ("tofu", "unlearn.max_grad_norm", NAN),  # NaN turned clipping off
    ("tofu", "unlearn.weight_decay", INF),
    ("tofu", "benchmark.finetune.learning_rate", NAN),
    ("tofu", "eval.batch_size", 2.5),
    ("tofu", "seed", NAN),
    ("tofu", "decoding.temperature", NAN),  # every job's decoding node, used or not
    ("tofu", "benchmark.forget_split", "forget07"),  # a choice, before the model loads (item 8)
    ("tofu", "benchmark.max_length", 0),
    ("wmdp", "benchmark.subset.questions", 0.5),
    ("wmdp", "benchmark.reasoning.suites.gsm8k.max_new_tokens", NAN),  # a suite inside another benchmark
    ("muse", "benchmark.privleak.k", NAN),
    ("cyclicreflex", "benchmark.max_new_tokens", INF),
    # each method's options (item 7)
    ("tofu", "method.beta", 0),  # NPO divides by beta: ZeroDivisionError
    ("tofu", "method.beta", -1),  # completed with a collapsed model
    ("tofu", "method.beta", NAN),
    ("tofu", "method.alpha", NAN),
    ("tofu", "method.gamma", -1),
    ("simnpo", "method.beta", 0),
    ("simnpo", "method.gamma_m", INF),
    ("wga", "method.beta", NAN),
    ("undial", "method.beta", -1),
    ("idkdpo", "method.beta", 0),
    ("graddiff", "method.alpha", -0.5),
    ("rmu", "method.layer", -1),
    ("rmu", "method.steering_coeff", NAN),
    ("rmu", "method.activation_cache_mb", INF),
    ("r2mu", "method.lam", NAN),
    ("r2mu", "method.cot_max_tokens", 1),
    ("r2mu", "method.traces.holdout", 1.0),
    ("r2mu", "method.traces.new_tokens", NAN),
    ("blur", "method.gamma", NAN),
    ("blur", "method.base.beta", 0),  # a nested component's options too
    ("ilu", "method.lam", -1),
    ("ilu", "method.env_batch_size", 0),
    ("ilu", "method.base.alpha", INF),
    ("task_vector", "method.lam", 0),
    ("task_vector", "method.rank", 0),
    ("task_vector", "method.finetune.learning_rate", NAN),
    # the other component kinds
    ("coreset", "coreset.ratio", NAN),
    ("coreset", "coreset.batch_size", 0),
    ("keyword", "coreset.top_k", NAN),
    ("relearn", "finetune_attack.train.learning_rate", NAN),
    ("relearn", "finetune_attack.lora.dropout", 1.0),
    ("relearn", "finetune_attack.examples", 0),
    ("cyclicreflex", "decoding.period", NAN),  # a traceback mid-generation
    ("cyclicreflex", "decoding.amplitude", INF),
    ("cyclicreflex", "decoding.temperature", NAN),
    ("cyclicreflex", "decoding.top_p", 1.5),
    ("s1", "decoding.max_waits", -1),
    ("tip", "decoding.delta", NAN),
    ("distill", "condense.ratio", NAN),
    ("distill", "distill.train.learning_rate", INF),
    ("trace", "analysis.split.test_fraction", NAN),
    ("trace", "analysis.generation.repetition_penalty", 0),
    ("trace", "analysis.classifier.learning_rate", NAN),
    ("connectivity", "analysis.points", 1),
    ("diffusion", "attack.lr", NAN),
    ("diffusion", "defense.rank_tol", NAN),
    ("diffusion", "defense.learn.steps", 1.5),
    ("diffusion", "generation.guidance", NAN),
]


@functools.cache
def _composed(setup: str):
    cfg = compose_cfg(*SETUPS[setup])
    validate(cfg)  # the setup itself is good: the bad value alone is refused
    return cfg


@pytest.mark.parametrize("setup,key,value", BAD, ids=[f"{k}={v}" for _, k, v in BAD])
def test_a_bad_value_is_refused_before_any_stage_naming_its_key(setup, key, value):
    cfg = copy.deepcopy(_composed(setup))
    OmegaConf.update(cfg, key, value, force_add=False)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.key == key, str(err.value)
    assert "Fix:" in str(err.value)


def test_a_nan_from_the_command_line_is_refused():
    """Hydra parses `nan` and `inf` as floats: they reach the check as numbers, not text."""
    for override, key in (("unlearn.learning_rate=nan", "unlearn.learning_rate"), ("method.beta=inf", "method.beta")):
        with pytest.raises(ConfigError) as err:
            validate(compose_cfg(*TINY, override))
        assert err.value.key == key


def test_method_none_on_a_benchmark_with_finetuned_models_is_refused_at_validation():
    with pytest.raises(ConfigError, match="scores against fine-tuned models") as err:
        validate(compose_cfg(*TINY, "method=none"))
    assert err.value.key == "method"
    validate(compose_cfg("method=none", "benchmark=muse", "benchmark.build_references=false",
                         "benchmark.privleak.retrain_auc=0.5"))  # fmt: skip


# every numeric option a component's config file sets is covered by its class's declared ranges
GROUPS = ("method", "benchmark", "coreset", "decoding", "condense", "finetune_attack", "analysis", "attack", "defense")
NOT_OPTIONS = ("_target_", "name", "defaults")


def _numeric_leaves(node, prefix=""):
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _numeric_leaves(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_OPTIONS:
            yield f"{prefix}{k}"


@pytest.mark.parametrize(
    "path",
    sorted(p for g in GROUPS for p in (Path(CONF_DIR) / g).glob("*.yaml")),
    ids=lambda p: f"{p.parent.name}-{p.stem}",
)
def test_every_numeric_option_of_a_component_has_a_declared_range(path):
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    target = node.get("_target_")
    if target is None:
        return  # `none`: no component
    declared = declared_ranges(get_class(target))
    # a node the file composes from another group (`/benchmark@reasoning.suites.math500`) is a component
    # of its own, checked against its own class
    composed = [next(iter(d)).partition("@")[2] for d in node.get("defaults", []) if isinstance(d, dict)]
    leaves = [k for k in _numeric_leaves(node) if not any(c and k.startswith(c + ".") for c in composed)]
    missing = [k for k in leaves if k not in declared]
    assert not missing, f"{path.name}: {missing} have no declared range in {target}.option_ranges"
