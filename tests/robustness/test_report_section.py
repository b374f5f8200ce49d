"""The battery's report section from hand-made records: a full-set and a coreset run of one method side by side,
the strongest setting per attack, recovery recomputed by hand, the plot written, no GCG heading without GCG."""

from __future__ import annotations

from matplotlib.image import imread

from runner.output.robustness import robustness_section


def _point(attack, setting, strength, after, unlearned, target):
    return {
        "attack": attack,
        "setting": setting,
        "strength": strength,
        "value": after,
        "after": after,
        "unlearned": unlearned,
        "target_after": target,
        "retain_after": 0.4,
        "recovery": (after - unlearned) / (target - unlearned),
    }


def _run(coreset, points):
    config = {"method": {"_target_": "runner.methods.npo.NPO"}, "coreset": {"ratio": 0.05} if coreset else None}
    choices = {"method": "npo", "coreset": "random" if coreset else "none"}
    return {"status": "completed", "choices": choices, "config": config, "robustness": {"points": points}}


def test_full_and_coreset_runs_side_by_side(tmp_path):
    full = _run(
        False,
        [
            _point("quantize", "int8", 8, 0.30, 0.30, 0.60),
            _point("quantize", "int4", 4, 0.36, 0.30, 0.50),  # (0.36 - 0.30) / (0.50 - 0.30) = 0.30
            _point("prefill", "4 tokens", 4, 0.40, 0.30, 0.70),  # 0.10 / 0.40 = 0.25
        ],
    )
    coreset = _run(True, [_point("quantize", "int4", 4, 0.45, 0.40, 0.50)])  # 0.05 / 0.10 = 0.50
    files = robustness_section([full, coreset], tmp_path, "report_robustness")
    assert [f.name for f in files] == [
        "report_robustness_battery.md",
        "report_robustness_battery.csv",
        "report_robustness_recovery.png",
        "report_robustness_recovery.pdf",
    ]
    text = files[0].read_text()
    # the summary: quantize at its fewest bits, prefill at its most tokens; a missing attack is a dash
    assert "| npo | 0.30 (0.360) | 0.25 (0.400) |" in text
    assert "| npo (coreset 0.05) | 0.50 (0.450) | – |" in text
    assert "| npo | quantize | int8 | 0.300 | 0.300 | 0.600 | 0.400 | 0.00 |" in text
    assert "GCG suffixes" not in text  # no GCG point: no empty table
    image = imread(files[2])
    assert image.shape[:2] == (320, 640)  # one 3.2-inch panel per attack (two) side by side, at 100 dpi


def test_each_individual_suffix_shows_its_own_success(tmp_path):
    gcg = {
        **_point("gcg", "individual, 5 steps", 5, 0.40, 0.30, 0.70),  # mean of 0.2 and 0.6
        "suffixes": ["ab", "c|d"],
        "suffix_values": [0.2, 0.6],
        "loss_start": 1.5,
        "loss": 1.25,
        "seconds_per_step": 2.0,
    }
    old = {**gcg, "setting": "individual, 10 steps", "strength": 10}  # a record from before per-suffix success
    del old["suffix_values"]
    (md, *_) = robustness_section([_run(False, [gcg, old])], tmp_path, "report_robustness")
    text = md.read_text()
    assert "| npo | gcg | individual, 5 steps | `ab` | 0.200 | – | 1.50 → 1.25 | 2.00 |" in text
    assert "| npo | gcg | individual, 5 steps | `c\\|d` | 0.600 | – | 1.50 → 1.25 | 2.00 |" in text
    assert "| npo | gcg | individual, 10 steps | `ab` | 0.400 | – |" in text  # only the mean was recorded
