"""generation.compile / generation.backend (runner/decoding/engine.py, vllm_backend.py): the choice and the errors."""

from __future__ import annotations

import pytest
import torch

from runner.decoding import engine
from runner.decoding.vllm_backend import unavailable_reason
from runner.errors import ConfigError

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def default_settings():
    yield
    engine.configure({}, None)


def test_auto_compiles_only_when_the_decode_steps_repay_it(monkeypatch):
    monkeypatch.setattr(engine, "inductor_usable", lambda device: (True, "test"))
    engine.configure({"compile": "auto"}, None)
    gpu, even = torch.device("cuda"), engine.BREAK_EVEN_STEPS["cuda"]  # plan reads the device type only
    assert engine.plan(gpu, even - 1)[0] is False
    compiled, why = engine.plan(gpu, even)
    assert compiled and why.startswith("auto:")
    assert engine.plan(CPU, 10**9) == (False, engine.CPU_NOT_FASTER)  # measured no faster on a CPU
    engine.configure({"compile": False}, None)
    assert engine.plan(CPU, 10**9) == (False, "generation.compile=false")
    engine.configure({"compile": "true"}, None)  # a command-line string works too
    assert engine.plan(CPU, 1) == (True, "generation.compile=true")


def test_without_a_cpp_compiler_auto_falls_back_with_the_reason_and_true_is_refused(monkeypatch):
    monkeypatch.setattr(engine.shutil, "which", lambda name: None)
    usable, why = engine.inductor_usable(CPU)
    assert not usable and "C++ compiler" in why
    engine.configure({"compile": "auto"}, None)
    compiled, why = engine.plan(CPU, 10**9)
    assert not compiled and "C++ compiler" in why  # the missing compiler is the reason given
    engine.configure({"compile": True}, None)
    with pytest.raises(ConfigError, match="generation.compile"):
        engine.plan(CPU, 1)
    with pytest.raises(ConfigError, match="generation.compile"):  # and at config check, before any stage
        engine.check_config({"compile": True})


def test_configure_puts_inductors_cache_under_the_runners(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")  # so that teardown puts back whatever was there
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    engine.configure({}, tmp_path)
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    # inductor's own default, written into the environment by an import before the job starts, is replaced
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    engine.configure({}, tmp_path)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))  # a directory the user chose is kept
    engine.configure({}, tmp_path)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


@pytest.mark.parametrize(
    "gen, key", [({"compile": "sometimes"}, "generation.compile"), ({"backend": "tgi"}, "generation.backend")]
)
def test_bad_generation_settings_name_the_key(gen, key):
    with pytest.raises(ConfigError, match=key):
        engine.check_config(gen)


def test_vllm_is_refused_at_config_check_where_it_cannot_run():
    why = unavailable_reason()
    if why is None:
        pytest.skip("vllm and a CUDA device are here: the backend is allowed")
    with pytest.raises(ConfigError, match="generation.backend") as err:
        engine.check_config({"backend": "vllm"})
    assert why in str(err.value)  # it says which is missing: the package or the GPU


def test_the_job_refuses_vllm_before_any_stage(tiny_cfg):
    if unavailable_reason() is None:
        pytest.skip("vllm can run here")
    from runner.job_kinds import validate

    with pytest.raises(ConfigError, match="generation.backend"):
        validate(tiny_cfg("generation.backend=vllm"))
    validate(tiny_cfg("generation.compile=false", "threads=1"))
