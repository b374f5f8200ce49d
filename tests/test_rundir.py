"""Run and sweep directories (runner/rundir.py): a sweep point's directory name."""

from __future__ import annotations

from runner.rundir import MAX_NAME, short_dirname


def test_a_point_is_named_by_its_choices_first_with_paths_hashed():
    # Hydra's override_dirname sorts by key: the path's key came first and its slashes nested the directory
    one = short_dirname("benchmark.bio_forget_corpus=tests/fixtures/wmdp/bio.jsonl,method=rmu,seed=0")
    other = short_dirname("benchmark.bio_forget_corpus=/data/other.jsonl,method=rmu,seed=0")
    assert one.startswith("method=rmu,seed=0,paths-") and "/" not in one
    assert other.startswith("method=rmu,seed=0,paths-") and other != one  # the paths still tell them apart
    assert (
        short_dirname("method=npo,seed=1,unlearn.learning_rate=1e-05")
        == "method=npo,seed=1,unlearn.learning_rate=1e-05"
    )
    assert short_dirname("analysis.layers=[0,2],method=ga") == "method=ga,analysis.layers=[0,2]"  # a list is one value


def test_a_long_name_keeps_the_choices_and_a_hash_of_the_whole():
    settings = ",".join(f"method.option_{i:02d}={i}" for i in range(30))
    a = short_dirname(f"{settings},method=npo,seed=0")
    b = short_dirname(f"{settings},method=ga,seed=0")
    assert a.startswith("method=npo,seed=0,method.option_00=0") and b.startswith("method=ga,seed=0,")
    assert len(a.encode()) <= MAX_NAME + 3 + 12 and a != b
