"""``python -m runner.report`` on a real tiny sweep: values, bold, escaping, failed rows, plots."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from pathlib import Path

import pytest
from PIL import Image

from runner.errors import ConfigError
from runner.output.frame import lookup
from runner.output.preset import load_preset
from runner.output.render import latex_escape
from runner.output.report import write_report
from runner.report import _is_path, main
from tests.conftest import ROOT, run_report
from tests.output.conftest import run_job


def _runs(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("results.json"))]


def _expected(root: Path, method: str, metric: str, model: str = "unlearned") -> tuple[float, float]:
    values = [
        r["metrics"][model][metric]
        for r in _runs(root)
        if r["status"] == "completed" and r["choices"]["method"] == method
    ]
    assert len(values) == 2
    return statistics.fmean(values), statistics.stdev(values)


def _markdown_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


COLUMNS = {"forget_quality": "up", "forget_prob": "down", "retain_prob": "up"}


def test_tables_hold_means_stds_bold_and_failed_rows(sweep):
    preset = load_preset("generic", [f"columns=[{','.join(COLUMNS)}]"])
    result = write_report([sweep], preset, plots=False)
    md = result["markdown"]
    rows = _markdown_rows(md)
    labels = list(rows)
    # header with arrows; the reference models first, then the methods; GradDiff (all failed) still listed
    assert labels[0] == "Run" and rows["Run"] == ["forget_quality ↑", "forget_prob ↓", "retain_prob ↑"]
    assert labels[1:3] == ["Original (target)", "Retain"]
    assert set(labels[3:]) == {"GA", "NPO †", "GradDiff †"}
    assert rows["GradDiff †"] == ["—", "—", "—"]
    assert "† NPO: 1 of 3 runs did not complete (seed=2 failed: config key `benchmark.source`" in md
    assert "† GradDiff: 1 of 1 runs did not complete (seed=0 failed" in md
    target = next(r for r in _runs(sweep) if r["status"] == "completed")["metrics"]["target"]
    assert rows["Original (target)"][1] == f"{target['forget_prob']:.3f}"  # one model for all seeds: no ± 0

    # each cell: mean ± sample std over the completed seeds, from the results.json files
    means = {}
    for method, label in (("ga", "GA"), ("npo", "NPO †")):
        for i, metric in enumerate(COLUMNS):
            mean, std = _expected(sweep, method, metric)
            means[(label, metric)] = mean
            assert rows[label][i].strip("*") == f"{mean:.3f} ± {std:.3f}"
    # bold: the best shown mean by the column's direction (ties all bold), methods only
    for i, (metric, direction) in enumerate(COLUMNS.items()):
        shown = {label: float(f"{means[(label, metric)]:.3f}") for label in ("GA", "NPO †")}
        best = (max if direction == "up" else min)(shown.values())
        for label, value in shown.items():
            assert rows[label][i].startswith("**") == (value == best), (metric, label)
        assert not rows["Retain"][i].startswith("**")
    assert any(rows[label][1].startswith("**") for label in ("GA", "NPO †"))

    # LaTeX: booktabs, balanced environments, escaped underscores, the same numbers and bold cells
    tex = (sweep / "report_generic.tex").read_text()
    for env in ("table", "tabular"):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}") == 1
    assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule")
    assert re.findall(r"(?<!\\)_", tex) == [] and "forget\\_quality $\\uparrow$" in tex
    mean, std = _expected(sweep, "npo", "forget_prob")
    npo_line = next(line for line in tex.splitlines() if line.startswith("NPO"))
    assert f"{mean:.3f} $\\pm$ {std:.3f}" in npo_line and npo_line.startswith("NPO $^\\dagger$")
    assert tex.count("\\textbf{") == sum(cells.count("**") // 2 for cells in map(" ".join, rows.values()))

    # CSV: full-precision numbers, counts, statuses
    table = {r["label"]: r for r in csv.DictReader(io.StringIO((sweep / "report_generic.csv").read_text()))}
    assert float(table["NPO"]["forget_prob_mean"]) == pytest.approx(mean, rel=1e-12)
    assert float(table["NPO"]["forget_prob_std"]) == pytest.approx(std, rel=1e-12)
    assert table["NPO"]["forget_prob_n"] == "2" and table["NPO"]["runs"] == "3"
    assert table["NPO"]["status"] == "completed+failed"
    assert table["GradDiff"]["status"] == "failed" and table["GradDiff"]["forget_prob_mean"] == ""
    assert table["Original (target)"]["kind"] == "reference"


def test_cli_tofu_preset_prints_markdown_and_draws_the_pareto_plot(sweep):
    out = run_report(str(sweep), "report=tofu", timeout=120)
    assert out.returncode == 0, out.stderr
    md = (sweep / "report_tofu.md").read_text()
    assert md.strip() in out.stdout
    rows = _markdown_rows(md)
    assert rows["Method"] == [
        "Forget Quality ↑",
        "Model Utility ↑",
        "Forget Prob. ↓",
        "Forget ROUGE ↓",
        "PrivLeak →0",
        "Extraction Strength ↓",
        "MIA Min-K% AUC",
    ]
    mean, std = _expected(sweep, "ga", "forget_quality")
    assert rows["GA"][0].strip("*") == f"{mean:.2e} ± {std:.2e}"
    _assert_image(sweep / "report_tofu_pareto.png", (640, 400))
    _assert_pdf(sweep / "report_tofu_pareto.pdf")


def test_rerun_copies_are_counted_once(sweep, tmp_path):
    # the same job found twice (a copied run directory): one job_key, one value
    ga = next(p for p in sweep.rglob("results.json") if "method=ga" in str(p))
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "results.json").write_text(ga.read_text())
    preset = load_preset("generic", ["columns=[forget_prob]"])
    table = write_report([sweep, tmp_path / "copy"], preset, out=tmp_path, plots=False)["table"]
    ga_row = next(r for r in table.rows if r.label == "GA")
    assert len(ga_row.runs) == 2 and len(ga_row.values["forget_prob"]) == 2


@pytest.fixture(scope="module")
def coreset_attack_runs(shared_cache, tmp_path_factory) -> Path:
    """Real NPO jobs on a random forget coreset (ratios 0.25, 0.5; seeds 0, 1), each then relearn-attacked."""
    root = tmp_path_factory.mktemp("coreset_attack")
    for ratio in (0.25, 0.5):
        for seed in (0, 1):
            run_job(
                shared_cache,
                root / f"npo-r{ratio}-s{seed}",
                "npo",
                seed,
                "coreset=random",
                f"coreset.ratio={ratio}",
                "finetune_attack=relearn",
                "finetune_attack.train.learning_rate=3e-3",  # strong enough to move the tiny model
                "finetune_attack.train.epochs=1",
                "finetune_attack.max_length=96",
                "finetune_attack.eval_examples=8",
            )
    return root


def _expected_where(root: Path, metric: str, model: str, **conditions) -> tuple[float, float]:
    values = [
        r["metrics"][model][metric]
        for r in _runs(root)
        if r["status"] == "completed" and all(lookup(r, k) == v for k, v in conditions.items())
    ]
    assert len(values) == 2
    return statistics.fmean(values), statistics.stdev(values)


def test_coreset_preset_and_curve(sweep, coreset_attack_runs, tmp_path):
    # the coreset runs next to the full-set NPO runs of the sweep (coreset=none: a null node, no ratio)
    result = write_report([coreset_attack_runs, sweep], load_preset("coreset"), out=tmp_path)
    rows = _markdown_rows(result["markdown"])
    cols = [c.id for c in result["table"].columns]
    assert cols == ["forget_quality", "model_utility", "forget_prob", "coreset.unlearn_steps"]
    for ratio in (0.25, 0.5):
        mean, std = _expected_where(coreset_attack_runs, "forget_prob", "unlearned", **{"config.coreset.ratio": ratio})
        assert rows[f"NPO, random, {ratio}"][2].strip("*") == f"{mean:.3f} ± {std:.3f}"
        assert rows[f"NPO, random, {ratio}"][3] == "12 ± 0"  # the coreset takes as many steps as the full set
    mean, std = _expected(sweep, "npo", "forget_prob")
    assert rows["NPO, none †"][2].strip("*") == f"{mean:.3f} ± {std:.3f}"
    assert [k for k in rows if k.startswith("NPO")] == ["NPO, none †", "NPO, random, 0.25", "NPO, random, 0.5"]
    _assert_image(tmp_path / "report_coreset_coreset_curve.png", (960, 360))
    _assert_pdf(tmp_path / "report_coreset_coreset_curve.pdf")


def test_attack_preset_rows_before_and_after(coreset_attack_runs, tmp_path):
    preset = load_preset("attack", ["rows=[choices.method,config.coreset.ratio]"])
    result = write_report([coreset_attack_runs], preset, out=tmp_path)
    rows = _markdown_rows(result["markdown"])
    assert list(rows)[1:5] == ["Original (target)", "Retain", "NPO, 0.25 (unlearned)", "NPO, 0.25 (attacked)"]
    # TOFU's forget metrics, the KS test's p-value in scientific notation; the WMDP / MUSE columns dropped
    cols = [c.id for c in result["table"].columns]
    assert cols[:5] == ["forget_prob", "forget_rouge", "forget_truth_ratio", "forget_quality", "model_utility"]
    assert "wmdp_bio" not in cols and "knowmem_forget" not in cols
    for stage in ("unlearned", "attacked"):
        mean, std = _expected_where(coreset_attack_runs, "forget_prob", stage, **{"config.coreset.ratio": 0.5})
        assert rows[f"NPO, 0.5 ({stage})"][0].strip("*") == f"{mean:.3f} ± {std:.3f}"
        mean, std = _expected_where(coreset_attack_runs, "forget_quality", stage, **{"config.coreset.ratio": 0.5})
        assert rows[f"NPO, 0.5 ({stage})"][3].strip("*") == f"{mean:.2e} ± {std:.2e}"
    _assert_image(tmp_path / "report_attack_attack.png", (960, 360))
    _assert_pdf(tmp_path / "report_attack_attack.pdf")


def test_bad_preset_and_empty_input_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="choose one of: .*tofu"):
        load_preset("nope")
    with pytest.raises(ConfigError, match="no results.json"):
        write_report([tmp_path], load_preset("tofu"))
    assert latex_escape("a_b & 5% #1 {x}") == r"a\_b \& 5\% \#1 \{x\}"


def _assert_image(path: Path, size: tuple[int, int]) -> None:
    assert path.stat().st_size > 5000
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == size
        assert len(set(img.convert("L").getdata())) > 10  # drawn on, not blank


def _assert_pdf(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 2000 and b"%%EOF" in data[-64:]


def test_a_setting_longer_than_a_file_name_is_a_setting_not_a_crash():
    long_setting = "rows=[" + ",".join(["choices.method"] * 40) + "]"
    assert len(long_setting) > 255 and not _is_path(long_setting)
    assert _is_path(".")


def test_help_lists_every_preset_with_its_rows_and_columns(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for path in sorted((ROOT / "conf" / "report").glob("*.yaml")):
        assert f"  {path.stem}: " in text
    assert "rows=choices.method,choices.coreset,config.coreset.ratio" in text  # the coreset preset's
    assert "columns=forget_quality,model_utility,forget_prob,forget_rouge" in text  # tofu's
