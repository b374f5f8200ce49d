"""docs/extending.md, followed literally: its code blocks become a package and a config folder outside
``runner/``, on Hydra's search path, and the toy method and benchmark run end to end on the tiny model."""

from __future__ import annotations

import json
import re
from pathlib import Path

from runner import job
from tests.conftest import ROOT, compose_cfg

GUIDE = ROOT / "docs" / "extending.md"
ROWS = [
    {"split": "forget", "question": "What colour is the sky on Zorb?", "answer": "Green, always."},
    {"split": "forget", "question": "Who founded Zorb?", "answer": "Queen Ilsa the Third."},
    {"split": "retain", "question": "What is two plus two?", "answer": "Four."},
    {"split": "retain", "question": "What is the capital of France?", "answer": "Paris."},
]


def write_guide_files(root: Path) -> list[Path]:
    """Every code block of the guide whose first line names a file (``# path``), written under ``root``."""
    written = []
    for block in re.findall(r"```(?:python|yaml)\n(.*?)```", GUIDE.read_text(), flags=re.S):
        first, _, body = block.partition("\n")
        name = re.fullmatch(r"# (\S+\.(?:py|yaml))", first.strip())
        if name is None:
            continue
        path = root / name.group(1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body.replace("/abs/path/my_unlearning", str(root)))
        written.append(path)
    (root / "my_unlearning" / "__init__.py").write_text("")
    return written


def test_the_guide_adds_a_method_and_a_benchmark_without_touching_runner(tmp_path, shared_cache, monkeypatch):
    project = tmp_path / "my_unlearning"
    written = write_guide_files(project)
    assert {p.relative_to(project).as_posix() for p in written} == {
        "my_unlearning/methods.py",
        "my_unlearning/benchmarks.py",
        "conf/method/scaled_ascent.yaml",
        "conf/benchmark/my_qa.yaml",
    }
    (project / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    monkeypatch.syspath_prepend(str(project))

    cfg = compose_cfg(
        f"hydra.searchpath=[file://{project / 'conf'}]",
        "method=scaled_ascent",
        "benchmark=my_qa",
        "model=tiny",
        "precision=fp32",
        f"paths.cache_dir={shared_cache}",
        "unlearn.epochs=3",
        "unlearn.batch_size=2",
        "unlearn.learning_rate=1e-2",
        "eval.batch_size=4",
    )
    assert cfg.method.scale == 0.5 and cfg.benchmark.path == str(project / "rows.jsonl")
    result = job.run(cfg, tmp_path / "run")

    assert result["status"] == "completed"
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    metrics = on_disk["metrics"]
    # gradient ascent on the forget answers: their NLL rises from the loaded model's
    assert metrics["unlearned"]["forget_nll"] > metrics["target"]["forget_nll"]
    assert len(on_disk["per_example"]["unlearned"]["forget"]["nll"]) == 2
    logged = on_disk["training"]["unlearn"]
    assert logged["steps"] == 3  # 2 forget rows, batch 2, 3 epochs
    # the loss is -scale * NLL with the config's scale 0.5: the mean training loss lies between
    # -0.5 x the forget NLL before and after
    before, after = metrics["target"]["forget_nll"], metrics["unlearned"]["forget_nll"]
    assert -0.5 * after <= logged["train_loss"] <= -0.5 * before
