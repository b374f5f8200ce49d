"""RMU: hand-computed losses, the truncated forward, the trainable set, the control vector, one update."""

from __future__ import annotations

import pytest
import torch

from runner.components import build
from runner.errors import ConfigError
from runner.methods.base import Method, UnlearnData
from runner.methods.layer_forward import hidden_at_layer
from runner.methods.rmu import RMU
from runner.methods.rmu_losses import control_vector, rmu_forget_loss, rmu_retain_loss
from tests.conftest import compose_cfg, random_llama

N_LAYERS = 4

# --- the pure losses -----------------------------------------------------------------------------

MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])  # row 1 has one padded position


def hidden_with_pad(pad_value: float) -> torch.Tensor:
    return torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[0.0, 1.0], [2.0, 2.0], [pad_value, -pad_value]]],
        dtype=torch.float64,
    )


def test_forget_loss_hand_values():
    control = torch.tensor([1.0, 0.0])
    # h - control at the 5 real tokens: (0,2) (2,4) (4,6) (-1,1) (1,2)
    # squared norms 4, 20, 52, 2, 5 -> sum 83, averaged over 5 tokens x 2 dims
    got = rmu_forget_loss(hidden_with_pad(0.0), MASK, control)
    assert got.item() == pytest.approx(83 / 10, rel=1e-6)
    # one mean over the batch's tokens, not the mean of per-row means (76/6 and 7/4)
    assert got.item() != pytest.approx((76 / 6 + 7 / 4) / 2 / 2, rel=1e-3)


def test_retain_loss_hand_values():
    frozen = torch.tensor(
        [[[1.0, 1.0], [3.0, 3.0], [5.0, 5.0]], [[0.0, 0.0], [2.0, 0.0], [0.0, 0.0]]], dtype=torch.float64
    )
    # h - frozen at the real tokens: (0,1) (0,1) (0,1) (0,1) (0,2) -> squared norms sum to 8, over 5 x 2
    got = rmu_retain_loss(hidden_with_pad(0.0), frozen, MASK)
    assert got.item() == pytest.approx(8 / 10, rel=1e-6)
    assert rmu_retain_loss(frozen, frozen.clone(), MASK).item() == 0.0


@pytest.mark.parametrize("pad_value", [1e6, 1e30, float("inf")])
def test_padding_does_not_change_the_losses(pad_value):
    control = torch.tensor([1.0, 0.0])
    frozen = torch.zeros(2, 3, 2, dtype=torch.float64)
    clean = hidden_with_pad(0.0)
    padded = hidden_with_pad(pad_value).requires_grad_(True)
    assert rmu_forget_loss(padded, MASK, control).item() == rmu_forget_loss(clean, MASK, control).item()
    retain = rmu_retain_loss(padded, frozen, MASK)
    assert retain.item() == rmu_retain_loss(clean, frozen, MASK).item()
    retain.backward()
    assert (padded.grad[1, 2] == 0).all() and torch.isfinite(padded.grad).all()


def test_retain_loss_does_not_backpropagate_into_the_frozen_side():
    hidden = torch.randn(2, 3, 2, requires_grad=True)
    frozen = torch.randn(2, 3, 2, requires_grad=True)
    rmu_retain_loss(hidden, frozen, MASK).backward()
    assert hidden.grad is not None and frozen.grad is None


# --- the control vector ----------------------------------------------------------------------------


def test_control_vector_unit_nonnegative_and_seeded():
    u = control_vector(64, seed=0)
    assert u.shape == (64,) and u.dtype == torch.float32
    assert u.norm().item() == pytest.approx(1.0, abs=1e-6)
    assert (u >= 0).all()
    torch.testing.assert_close(u, control_vector(64, seed=0), rtol=0, atol=0)
    assert not torch.equal(u, control_vector(64, seed=1))
    # the global RNG plays no part
    torch.manual_seed(123)
    torch.testing.assert_close(u, control_vector(64, seed=0), rtol=0, atol=0)


# --- on a tiny Llama -------------------------------------------------------------------------------


def make_llama():
    return random_llama(num_hidden_layers=N_LAYERS).eval()


@pytest.fixture(scope="module")
def llama():
    return make_llama()


def text_batch(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (2, 6), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    return {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask}


def make_data(model, seed: int = 0) -> UnlearnData:
    return UnlearnData(
        model=model,
        forget=[],
        retain=[],
        encode=lambda rows: [],
        pad_id=0,
        eval_batch_size=2,
        precision="fp32",
        seed=seed,
    )


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_hidden_at_layer_matches_hidden_states(llama, layer):
    batch = text_batch(0)
    with torch.no_grad():
        expected = llama(**batch, output_hidden_states=True).hidden_states[layer + 1]
        got = hidden_at_layer(llama, batch, layer)
    assert got.shape == (2, 6, 16)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_hidden_at_layer_stops_at_the_layer(llama):
    layer = 1
    calls: dict[str, int] = {}

    def counter(name):
        def hook(module, args, output):
            calls[name] = calls.get(name, 0) + 1

        return hook

    modules = {f"layer{i}": llama.model.layers[i] for i in range(N_LAYERS)}
    modules |= {"norm": llama.model.norm, "lm_head": llama.lm_head}
    hooks_before = dict(llama.model.layers[layer]._forward_hooks)  # transformers keeps hooks of its own there
    handles = [m.register_forward_hook(counter(name)) for name, m in modules.items()]
    try:
        with torch.no_grad():
            got = hidden_at_layer(llama, text_batch(0), layer)
        assert calls == {"layer0": 1, "layer1": 1}  # nothing above layer 1, no final norm, no LM head
        # the stopping hook is gone and the model is left in a usable state: a full forward runs every layer
        calls.clear()
        with torch.no_grad():
            full = llama(**text_batch(0), output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    assert dict(llama.model.layers[layer]._forward_hooks) == hooks_before
    assert calls == {f"layer{i}": 1 for i in range(N_LAYERS)} | {"norm": 1, "lm_head": 1}
    assert len(full.hidden_states) == N_LAYERS + 1
    torch.testing.assert_close(got, full.hidden_states[layer + 1], rtol=1e-6, atol=1e-6)


def test_hidden_at_layer_takes_the_first_element_of_a_tuple_output():
    model = make_llama()
    layer = model.model.layers[1]
    plain = layer.forward
    layer.forward = lambda *args, **kwargs: (plain(*args, **kwargs), "extra")
    with torch.no_grad():
        got = hidden_at_layer(model, text_batch(0), 1)
        layer.forward = plain
        expected = hidden_at_layer(model, text_batch(0), 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    "layer,trained", [(2, [0, 1, 2]), (3, [1, 2, 3]), (1, [0, 1]), (0, [0])], ids=["l2", "l3", "l1", "l0"]
)
def test_select_trainable_default_is_down_proj_of_l_minus_2_to_l(layer, trained):
    model = make_llama()
    names = RMU(layer=layer).select_trainable(model)
    expected = {f"model.layers.{i}.mlp.down_proj.weight" for i in trained}
    assert set(names) == expected
    assert trainable_names(model) == expected


def test_select_trainable_explicit_layers_and_regex():
    model = make_llama()
    RMU(layer=3, trainable_layers=[3]).select_trainable(model)
    assert trainable_names(model) == {"model.layers.3.mlp.down_proj.weight"}
    RMU(layer=3, trainable_layers=[0], trainable_params=r"layers\.2\.mlp\.(up|gate)_proj").select_trainable(model)
    assert trainable_names(model) == {"model.layers.2.mlp.up_proj.weight", "model.layers.2.mlp.gate_proj.weight"}


def test_config_errors():
    model = make_llama()
    method = RMU(layer=N_LAYERS)  # the depth is known only once the model is
    with pytest.raises(ConfigError) as err:
        method.select_trainable(model)
    assert err.value.key == "method.layer" and "0..3" in str(err.value)
    with pytest.raises(ConfigError, match="method.layer"):
        method.prepare(make_data(model))
    for bad in (N_LAYERS, -1):
        with pytest.raises(ConfigError, match="method.layer"):
            hidden_at_layer(model, text_batch(0), bad)
    with pytest.raises(ConfigError, match="method.layer"):  # RMU's declared option range, read by the builder
        build({"_target_": "runner.methods.rmu.RMU", "layer": -1}, Method, "method")
    with pytest.raises(ConfigError) as err:
        RMU(layer=1, trainable_params=r"no_such_parameter").select_trainable(model)
    assert err.value.key == "method.trainable_params" and "Fix:" in str(err.value)
    with pytest.raises(ConfigError, match="method.trainable_layers"):
        RMU(layer=1, trainable_layers=[2])  # above the steered layer: no gradient would reach it
    with pytest.raises(ConfigError, match="method.trainable_layers"):
        RMU(layer=1, trainable_layers=[])
    with pytest.raises(ConfigError, match="method.trainable_params"):
        RMU(trainable_params="(")


def test_prepare_builds_the_seeded_control():
    model = make_llama()
    method = RMU(layer=2, steering_coeff=6.5)
    method.select_trainable(model)
    method.prepare(make_data(model, seed=3))
    torch.testing.assert_close(method.control, 6.5 * control_vector(16, seed=3), rtol=0, atol=0)
    assert len(method.original.params) == 3  # only the trainable tensors are saved


def test_one_update():
    model = make_llama().train()
    method = RMU(layer=2, steering_coeff=6.5, alpha=10.0)
    method.select_trainable(model)
    method.prepare(make_data(model))
    batch = {"forget": text_batch(1), "retain": text_batch(2)}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = trainable_names(model)

    loss, terms = method.loss(model, batch)
    assert set(terms) == {"rmu_forget", "rmu_retain"}
    assert terms["rmu_retain"] == 0.0  # theta == theta_0: the two passes are the same computation
    assert terms["rmu_forget"] > 0
    assert loss.item() == pytest.approx(terms["rmu_forget"])
    # the split BLUR / ILU use gives the same two numbers
    assert method.forget_term(model, batch).item() == pytest.approx(terms["rmu_forget"], rel=1e-6)
    assert method.retain_term(model, batch).item() == 0.0
    loss.backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == trainable
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    model.zero_grad()

    with torch.no_grad():
        loss_after, terms_after = method.loss(model, batch)
    assert terms_after["rmu_retain"] > 0
    assert loss_after.item() == pytest.approx(terms_after["rmu_forget"] + 10.0 * terms_after["rmu_retain"], rel=1e-5)
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    for n in after:
        if n in trainable:
            assert not torch.equal(after[n], before[n]), n
        else:
            assert torch.equal(after[n], before[n]), n
    # the saved theta_0 values are intact, the swap shows them and then restores the trained values
    params = dict(model.named_parameters())
    names = [n for n, p in params.items() if any(p is q for q in method.original.params)]
    assert set(names) == trainable
    for saved, p in zip(method.original.saved, method.original.params, strict=True):
        name = next(n for n in names if params[n] is p)
        assert torch.equal(saved, before[name])
    with method.original.active():
        for n in names:
            assert torch.equal(params[n], before[n])
    for n in names:
        assert torch.equal(params[n], after[n])


def test_yaml_instantiates_the_paper_defaults():
    method = build(compose_cfg("method=rmu").method, Method, "method")
    assert isinstance(method, RMU)
    assert (method.layer, method.trainable_layers) == (7, [5, 6, 7])
    assert (method.steering_coeff, method.alpha) == (6.5, 1200.0)
    assert method.trainable_params == r"(?:^|\.)layers\.(?:5|6|7)\.mlp\.down_proj\.weight$"


def _examples(seed: int, n: int) -> list[dict]:
    """Encoded examples of different lengths, each with its index (as the pipeline builds them)."""
    g = torch.Generator().manual_seed(seed)
    return [
        {"input_ids": torch.randint(1, 50, (4 + i,), generator=g).tolist(), "labels": [-100] * (4 + i), "index": i}
        for i in range(n)
    ]


def test_activation_cache_gives_the_same_losses_before_and_after_updates():
    from runner.data.qa import collate_qa

    model = make_llama()
    forget, retain = _examples(1, 3), _examples(2, 3)
    data = make_data(model)
    data.forget, data.retain = forget, retain
    cached = RMU(layer=2, trainable_layers=[1, 2], alpha=5.0)
    cached.select_trainable(model)
    cached.prepare(data)
    assert cached.first_trainable == 1 and len(cached.frozen_retain) == 3
    plain = RMU(layer=2, trainable_layers=[1, 2], alpha=5.0, activation_cache_mb=0)  # no cache: full forward
    plain.select_trainable(model)
    plain.prepare(data)
    assert plain.first_trainable is None
    batch = {"forget": collate_qa(forget[:2], 0), "retain": collate_qa(retain[1:], 0)}

    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):  # the cache stays exact while layers 1..2 train
        loss_cached, _ = cached.loss(model, batch)
        loss_plain, _ = plain.loss(model, batch)
        assert torch.allclose(loss_cached, loss_plain, rtol=1e-5, atol=1e-6)
        grads_cached = torch.autograd.grad(loss_cached, [p for p in model.parameters() if p.requires_grad])
        grads_plain = torch.autograd.grad(
            plain.loss(model, batch)[0], [p for p in model.parameters() if p.requires_grad]
        )
        for a, b in zip(grads_cached, grads_plain, strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
        opt.zero_grad()
        cached.loss(model, batch)[0].backward()
        opt.step()
    assert cached.loss(model, batch)[1]["rmu_retain"] > 0


def test_block_forward_skips_the_frozen_prefix():
    from runner.methods.layer_forward import hidden_from_block

    model = make_llama()
    batch = text_batch(3)
    below = hidden_at_layer(model, batch, 0)
    calls = []
    hook = model.model.layers[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        out = hidden_from_block(model, batch, below, first=1, layer=2)
    finally:
        hook.remove()
    assert calls == []  # layer 0 never ran
    assert torch.allclose(out, hidden_at_layer(model, batch, 2), atol=1e-6)
    assert isinstance(model.model.layers[0], type(model.model.layers[1]))  # restored
