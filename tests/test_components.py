"""The one builder: null means none, a node becomes an object of the kind's contract, bad nodes name their key."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from runner import job
from runner.components import build
from runner.errors import ConfigError
from runner.methods.base import ForgetRetainMethod, Method
from runner.methods.npo import NPO


def test_null_builds_nothing():
    assert build(None, Method, "method") is None


def test_a_node_builds_its_class_with_options_and_runtime_objects():
    method = build(OmegaConf.create({"_target_": "runner.methods.npo.NPO", "beta": 0.3}), Method, "method")
    assert type(method) is NPO and method.beta == 0.3 and method.alpha == 1.0

    class Holder(Method):
        def __init__(self, size: int, tokenizer):
            self.size, self.tokenizer = size, tokenizer

        def loss(self, model, batch):
            raise AssertionError("not called")

    node = {"_target_": f"{__name__}.HOLDER", "size": 3}
    globals()["HOLDER"] = Holder
    built = build(node, Method, "method", tokenizer="tok")
    assert (built.size, built.tokenizer) == (3, "tok")


@pytest.mark.parametrize(
    ("node", "kind", "message"),
    [
        ({"beta": 0.1}, Method, r"`method._target_`: the node names no class"),
        ({"_target_": "runner.methods.nope.NPO"}, Method, r"`method._target_`: cannot import"),
        ({"_target_": "runner.methods.ga.GradientAscent"}, ForgetRetainMethod, r"is not a ForgetRetainMethod"),
        ({"_target_": "runner.methods.npo.NPO", "betta": 0.1}, Method, r"`method`: .*betta"),
    ],
)
def test_bad_nodes_stop_with_the_key_named(node, kind, message):
    with pytest.raises(ConfigError, match=message):
        build(node, kind, "method")


def test_a_method_must_define_its_objective_or_its_update():
    with pytest.raises(TypeError, match="neither loss"):

        class Empty(Method):  # noqa: F841 (defining it is the test)
            pass


def test_method_config_error_is_not_wrapped_by_hydra(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="method.variant"):
        job.run(tiny_cfg("method=task_vector", "method.variant=bogus"), tmp_path)


class _Broken(Method):
    def __init__(self, size: int = 1):
        self.size = len(size)  # a bug inside the constructor: TypeError on an int

    def loss(self, model, batch):
        raise AssertionError("not called")


def test_a_type_error_inside_a_constructor_is_a_bug_not_a_bad_option():
    with pytest.raises(TypeError, match="has no len"):
        build({"_target_": f"{__name__}._Broken"}, Method, "method")
