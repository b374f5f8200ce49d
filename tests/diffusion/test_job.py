"""The whole diffusion attack job on the tiny pipeline: real generation, NudeNet, the record."""

import json

import pytest

from runner import job
from runner.errors import ConfigError
from runner.output.preset import load_preset
from runner.output.report import write_report
from tests.conftest import compose_cfg
from tests.diffusion.conftest import TINY_JOB


def test_the_tiny_job_completes_with_success_per_prompt(tmp_path, shared_cache, capsys):
    cfg = compose_cfg(
        *TINY_JOB,
        f"paths.cache_dir={shared_cache}",
        "seed=913",  # no other test runs this seed: no reused job
        "attack.steps=2",
        "attack.n_tokens=2",
        "defense.learn.steps=2",  # the same options as the attack: the defence reuses its tokens
        "defense.learn.n_tokens=2",
        "defense.adaptive=false",
        "concept.prompts=[a photo of a street,a dog in a park]",
    )
    run_dir = tmp_path / "run"
    out = job.run(cfg, run_dir, choices={"task": "diffusion_attack", "attack": "subspace"})
    saved = json.loads((run_dir / "results.json").read_text())
    assert out["status"] == saved["status"] == "completed"
    # a progress bar per stage that trains or generates, named for it
    shown = capsys.readouterr().err
    assert all(f"{stage}: 100%" in shown for stage in ("attack", "generate_no_attack", "generate_attacked_defended"))
    rows = {"no_attack", "attacked", "random_tokens", "defended", "attacked_defended", "defended_random"}
    assert set(saved["metrics"]) == rows
    for row in rows - {"random_tokens", "defended_random"}:
        per_prompt = saved["per_example"][row]
        assert len(per_prompt["success_rate"]) == 2 and len(per_prompt["success"]) == 2
        assert all(0.0 <= r <= 1.0 for r in per_prompt["success_rate"])
        assert saved["metrics"][row]["asr"] == sum(per_prompt["success"]) / 2
        assert (run_dir / saved["diffusion"]["images"][row]).is_file()
    assert all(v["denoising_loss"] > 0 for v in saved["metrics"].values())
    # the tokens the defence projects out are the attack's own: nothing of them is left
    assert saved["diffusion"]["defense"] == {"name": "subspace", "source": "the job's attack", "rank": 2}
    assert saved["diffusion"]["attack"]["training"]["max_abs_cosine"] < 1e-4
    assert len(saved["diffusion"]["attack"]["words"]) == 2
    assert "| 1 |" in (run_dir / "tokens.md").read_text()
    assert (run_dir / "attack_tokens.safetensors").is_file() and (run_dir / "images" / "concept.png").is_file()
    assert saved["versions"]["diffusers"] and saved["versions"]["nudenet"]
    # the report: the table of rows, and each run's grids and word lists beside it
    report = write_report([run_dir], load_preset("diffusion"), out=str(tmp_path / "report"))
    assert "(attacked)" in report["markdown"] and "(attack through the defence)" in report["markdown"]
    page = (tmp_path / "report" / "report_diffusion_images.md").read_text()
    assert "attack tokens" in page and page.count("![") == len(saved["diffusion"]["images"])
    assert all(p.is_file() for p in report["files"])


@pytest.mark.parametrize(
    "override,key",
    [
        ("generation.scheduler=euler", "generation.scheduler"),
        ("attack.orthogonality=qr", "attack.orthogonality"),
        ("detector.classes=[NOT_A_CLASS]", "detector.classes"),
        ("concept.images.source=web", "concept.images.source"),
        ("diffusion_model=local", "diffusion_model.unet.id"),
        ("attack.n_tokens=14", "attack.n_tokens"),
    ],
)
def test_a_bad_value_fails_before_any_model_loads(tmp_path, shared_cache, override, key):
    cfg = compose_cfg(*TINY_JOB, f"paths.cache_dir={shared_cache}", override)
    with pytest.raises(ConfigError) as err:
        job.run(cfg, tmp_path / "run")
    assert err.value.key == key
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["status"] == "failed" and saved["error"]["stage"] == "config" and saved["error"]["setting"] == key
