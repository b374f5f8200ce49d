"""R²MU: the four-term loss by hand (padding masked), the step's data, trainable weights by module name on Llama
and Qwen2, the config checks, and whole WMDP jobs on the tiny model (R²MU, and RMU measuring the same traces)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from runner import job
from runner.components import build
from runner.errors import ConfigError
from runner.methods.base import Method
from runner.methods.r2mu import R2MU, QuadDataset, r2mu_loss
from runner.training import PairedDataset
from tests.conftest import compose_cfg, experiment_cfg, random_llama, random_qwen2

# --- the loss on fixed activations ------------------------------------------------------------------------

CONTROL = torch.tensor([1.0, 0.0])


def activations(pad: float):
    """Activations (d = 2) of the four parts; ``pad`` fills every padded position."""
    hidden = {
        "forget": torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]),
        "retain": torch.tensor([[[1.0, 1.0], [pad, pad]]]),
        "trace": torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[2.0, 0.0], [pad, -pad]]]),
        "cot": torch.tensor([[[2.0, 2.0]]]),
    }
    frozen = {"retain": torch.tensor([[[0.0, 1.0], [0.0, 0.0]]]), "cot": torch.tensor([[[1.0, 1.0]]])}
    masks = {
        "forget": torch.tensor([[1, 1]]),
        "retain": torch.tensor([[1, 0]]),
        "trace": torch.tensor([[1, 1], [1, 0]]),
        "cot": torch.tensor([[1]]),
    }
    return hidden, frozen, masks


def test_four_term_loss_hand_values():
    hidden, frozen, masks = activations(pad=0.0)
    total, terms = r2mu_loss(hidden, frozen, masks, CONTROL, alpha=2.0, lam=3.0)
    # forget: h - c at 2 tokens = (0,2) (2,4): 4 + 20 = 24 over 2 tokens x 2 dims
    assert terms["forget"].item() == pytest.approx(24 / 4)
    # retain: one real token, h - h0 = (1,0): 1 over 1 x 2
    assert terms["retain"].item() == pytest.approx(1 / 2)
    # trace: h - c at 3 real tokens = (0,0) (0,1) (1,0): 2 over 3 x 2
    assert terms["trace"].item() == pytest.approx(2 / 6)
    # cot: (1,1): 2 over 1 x 2
    assert terms["cot"].item() == pytest.approx(1.0)
    assert total.item() == pytest.approx(6 + 2 * 0.5 + 1 / 3 + 3 * 1.0)


@pytest.mark.parametrize("pad", [7.0, 1e6, float("inf")])
def test_padding_enters_no_mean(pad):
    clean, frozen, masks = activations(pad=0.0)
    padded, _, _ = activations(pad=pad)
    for part in padded.values():
        part.requires_grad_(True)
    want, _ = r2mu_loss(clean, frozen, masks, CONTROL, alpha=2.0, lam=3.0)
    got, _ = r2mu_loss(padded, frozen, masks, CONTROL, alpha=2.0, lam=3.0)
    assert got.item() == want.item()
    got.backward()
    assert (padded["retain"].grad[0, 1] == 0).all() and (padded["trace"].grad[1, 1] == 0).all()
    # the release's plain mean over every position would count the padded ones: retain = ((1,0), (pad,pad)) / 4
    if pad == 7.0:
        release_retain = (1 + 2 * 49) / 4
        assert release_retain != pytest.approx(0.5)


# --- the data of a step ---------------------------------------------------------------------------------


def _rows(tag: int, n: int) -> list[dict]:
    return [{"input_ids": [tag, i + 3], "labels": [tag, i + 3], "index": i} for i in range(n)]


def test_step_data_keeps_rmus_pairs_and_draws_traces_and_cot_by_seed():
    forget, retain, trace, cot = _rows(1, 6), _rows(2, 5), _rows(3, 4), _rows(4, 7)
    quad, pairs = QuadDataset(forget, retain, trace, cot, seed=5), PairedDataset(forget, retain, seed=5)
    assert len(quad) == 6
    for epoch in (0, 1):
        quad.set_epoch(epoch)
        pairs.set_epoch(epoch)
        for i in range(6):
            item = quad[i]
            assert item["forget"] is pairs[i]["forget"] and item["retain"] is pairs[i]["retain"]  # RMU's draws
            assert item["trace"] in trace and item["cot"] in cot
    again = QuadDataset(forget, retain, trace, cot, seed=5)
    other = QuadDataset(forget, retain, trace, cot, seed=6)
    draws = [(quad[i]["trace"]["index"], quad[i]["cot"]["index"]) for i in range(6)]
    again.set_epoch(1)
    assert draws == [(again[i]["trace"]["index"], again[i]["cot"]["index"]) for i in range(6)]
    other.set_epoch(1)
    assert draws != [(other[i]["trace"]["index"], other[i]["cot"]["index"]) for i in range(6)]


# --- trainable weights by module name -------------------------------------------------------------------


def test_module_names_pick_the_same_matrices_in_llama_and_qwen2():
    method = build(compose_cfg("method=r2mu", "method.layer=2").method, Method, "method")
    llama, qwen = random_llama(num_hidden_layers=4), random_qwen2(num_hidden_layers=4)
    for model in (llama, qwen):
        names = method.select_trainable(model)
        assert names == [f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1, 2)]
        trained = [p for p in model.parameters() if p.requires_grad]
        assert [id(p) for p in trained] == [id(model.model.layers[i].mlp.down_proj.weight) for i in (0, 1, 2)]
    # why not by position (the release's choice): Qwen2's attention biases shift every later parameter
    position = [n for n, _ in llama.named_parameters()].index("model.layers.1.mlp.down_proj.weight")
    assert [n for n, _ in qwen.named_parameters()][position] != "model.layers.1.mlp.down_proj.weight"


def test_trainable_modules_option_names_other_matrices():
    method = build(
        compose_cfg("method=r2mu", "method.layer=1", "method.trainable_modules=[mlp.up_proj,self_attn.o_proj]").method,
        Method,
        "method",
    )
    names = method.select_trainable(random_qwen2(num_hidden_layers=4))
    assert names == [f"model.layers.{i}.{m}.weight" for i in (0, 1) for m in ("self_attn.o_proj", "mlp.up_proj")]
    missing = build(
        compose_cfg("method=r2mu", "method.layer=1", "method.trainable_modules=[mlp.w2]").method, Method, "method"
    )
    with pytest.raises(ConfigError, match="method.trainable_modules"):
        missing.select_trainable(random_qwen2(num_hidden_layers=4))


# --- config -------------------------------------------------------------------------------------------


def test_yaml_holds_the_release_defaults():
    method = build(compose_cfg("method=r2mu").method, Method, "method")
    assert isinstance(method, R2MU)
    assert (method.layer, method.trainable_layers, method.trainable_modules) == (7, [5, 6, 7], ["mlp.down_proj"])
    assert (method.steering_coeff, method.alpha, method.lam) == (6.5, 1.7, 1.0)
    t = method.traces
    assert (t.cue, t.prompt_tokens, t.new_tokens, t.train_tokens) == (
        "\nLet's reason this step by step.\n",
        512,
        1024,
        100,
    )
    assert method.cot_cfg["name"] == "gsm8k" and method.cot_cfg["source"] == "local"  # offline default


@pytest.mark.parametrize(
    "override,key",
    [
        ("method.traces.train_tokens=2000", "method.traces.train_tokens"),
        ("method.traces.new_tokens=0", "method.traces.new_tokens"),
        ("method.traces.holdout=1.0", "method.traces.holdout"),
        ("+method.traces.temperature=0.6", "method.traces.temperature"),
        ("method.lam=-1", "method.lam"),
        ("method.cot_max_tokens=1", "method.cot_max_tokens"),
        ("method.traces=null", "method.traces"),
        ("method.trainable_modules=[]", "method.trainable_modules"),
    ],
)
def test_bad_options_name_their_key(override, key):
    with pytest.raises(ConfigError) as err:
        build(compose_cfg("method=r2mu", override).method, Method, "method")
    assert f"`{key}`" in str(err.value)


def test_a_missing_cot_directory_is_named_at_build():
    cfg = compose_cfg("method=r2mu", "traces@method.cot=limo", "method.cot.source=/nowhere")
    with pytest.raises(ConfigError, match="`method.cot.source`"):
        build(cfg.method, Method, "method")
    built = build(compose_cfg("method=r2mu", "traces@method.cot=limo").method, Method, "method")  # hub: read later
    assert built.cot_cfg["name"] == "limo"


def test_bad_option_stops_the_job_before_the_model_loads(shared_cache, tmp_path):
    cfg = experiment_cfg("wmdp_smoke_tiny", shared_cache, "method=r2mu", "method.traces.train_tokens=5000")
    with pytest.raises(ConfigError, match="method.traces.train_tokens"):
        job.run(cfg, tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed" and record["timings"] == {}  # no stage ran (no model loaded)
    assert record["error"]["setting"] == "method.traces.train_tokens"


# --- whole jobs on the tiny model and the WMDP fixtures --------------------------------------------------

TINY = [
    "method.layer=1",
    "method.trainable_layers=[0,1]",
    "method.steering_coeff=20",
    "method.traces={new_tokens: 24, train_tokens: 16, holdout: 0.25, batch_size: 4}",
    "seed=151",  # used by no other test: the job cache must not answer these jobs
]
R2MU_TINY = ["method=r2mu", "method.alpha=10", "method.cot.subset=8", "method.cot_max_tokens=48", *TINY]


def test_wmdp_r2mu_job_and_rmu_measuring_the_same_traces(shared_cache, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    r2mu = job.run(experiment_cfg("wmdp_smoke_tiny", shared_cache, *R2MU_TINY), tmp_path / "r2mu")
    on_disk = json.loads((tmp_path / "r2mu" / "results.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["config"]["method"]["_target_"] == "runner.methods.r2mu.R2MU"
    training = on_disk["training"]["unlearn"]
    # 8 forget texts in batches of 4, 2 epochs; 2 of the 8 traces (ceil(0.25 * 8)) held out and measured
    assert training["steps"] == 4 and training["trace_mse"]["n"] == 2
    trace = training["trace_mse"]
    assert trace["end"] < trace["start"]
    assert trace["relative_drop"] == pytest.approx((trace["start"] - trace["end"]) / trace["start"])
    assert list(on_disk["metrics"]) == ["target", "unlearned"] and r2mu["training"] == on_disk["training"]

    # plain RMU, same seed and trace settings: the traces come from the cache, the held-out set and c*u are the
    # same, so the measurement starts from the same value
    caplog.clear()
    rmu = experiment_cfg("wmdp_smoke_tiny", shared_cache, "method=rmu", "method.alpha=10", *TINY)
    job.run(rmu, tmp_path / "rmu")
    rmu_disk = json.loads((tmp_path / "rmu" / "results.json").read_text())
    assert rmu_disk["status"] == "completed"
    assert rmu_disk["training"]["unlearn"]["trace_mse"]["start"] == pytest.approx(trace["start"], rel=1e-6)
    assert any("cache hit: reasoning traces of 8 forget documents" in r.getMessage() for r in caplog.records)
    assert not any("R²MU: generated" in r.getMessage() for r in caplog.records)
