"""The method contract (runner/methods/base.py): one step of each method on a toy Llama;
whole-gradient methods refuse several processes."""

from __future__ import annotations

import math

import pytest
import torch

from runner.distributed.ranks import free_port
from tests.conftest import method_from_yaml, toy_batch, toy_data


def test_whole_gradient_methods_refuse_multi_process_runs(tmp_path):
    """Under a 2-rank process group BLUR and ILU stop at start-up instead of mixing gradient shards."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import os, sys, torch.distributed as dist
        from runner.errors import ConfigError
        from runner.methods.blur import BLUR
        from runner.methods.ilu import ILU
        dist.init_process_group("gloo")
        node = {"_target_": "runner.methods.npo.NPO"}
        for method in (BLUR(base=node), ILU(base=node)):
            try:
                method.prepare(None)
            except ConfigError as exc:
                assert "`distributed`" in str(exc), exc
            else:
                sys.exit(f"{type(method).__name__} did not refuse")
        dist.destroy_process_group()
        """
    )
    path = tmp_path / "probe.py"
    path.write_text(script)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        str(path),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.parametrize(
    "name,terms",
    [
        ("simnpo", {"simnpo_forget", "retain_nll"}),
        ("wga", {"wga_forget", "retain_nll"}),
        ("undial", {"undial_kl"}),
        ("idkdpo", {"idkdpo_forget", "retain_nll"}),
    ],
)
def test_method_step_on_tiny_llama(toy_llama, name, terms):
    method = method_from_yaml(name)
    data = toy_data(toy_llama)
    before = [p.detach().clone() for p in toy_llama.parameters()]
    method.prepare(data)
    toy_llama.zero_grad()
    loss, logged = method.loss(toy_llama, toy_batch(data))
    assert torch.isfinite(loss)
    assert set(logged) == terms and all(math.isfinite(v) for v in logged.values())
    loss.backward()
    grads = [p.grad for p in toy_llama.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0
    assert toy_llama.get_output_embeddings().weight.grad.abs().sum() > 0
    # no method leaves the weights changed (UNDIAL swaps theta_0 in and back out)
    assert all(torch.equal(p, b) for p, b in zip(toy_llama.parameters(), before, strict=True))
    toy_llama.zero_grad()


def test_a_subclass_that_redefines_loss_is_trained_on_it_not_on_an_inherited_split(toy_llama):
    """The trainer back-propagates ``loss_parts``: redefining ``loss`` alone must not leave the parent's parts."""
    from runner.methods.npo import NPO
    from tests.conftest import toy_batch, toy_data

    class DoubledNPO(NPO):
        def loss(self, model, batch):
            loss, terms = super().loss(model, batch)
            return 2 * loss, {"doubled": loss.item()}

    method = DoubledNPO()
    data = toy_data(toy_llama)
    method.prepare(data)
    batch = toy_batch(data)
    parts = list(method.loss_parts(toy_llama, batch))
    assert len(parts) == 1 and set(parts[0][1]) == {"doubled"}
    whole, _ = method.loss(toy_llama, batch)
    assert parts[0][0].item() == pytest.approx(whole.item())
    assert len(list(NPO.loss_parts(method, toy_llama, batch))) == 2  # the parent keeps its own split
