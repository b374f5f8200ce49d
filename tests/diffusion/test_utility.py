import numpy as np
import pytest

from runner.diffusion.utility import frechet_distance, gaussian, read_captions


def test_frechet_distance_by_hand():
    assert frechet_distance([0.0], [[1.0]], [0.0], [[1.0]]) == pytest.approx(0.0, abs=1e-9)
    # 1-D: (mu1 - mu2)^2 + s1 + s2 - 2 sqrt(s1 s2) = 4 + 1 + 4 - 4
    assert frechet_distance([0.0], [[1.0]], [2.0], [[4.0]]) == pytest.approx(5.0)
    # diagonal: the sum over dimensions
    d = frechet_distance([0, 0], np.diag([1.0, 9.0]), [1, 0], np.diag([4.0, 1.0]))
    assert d == pytest.approx(1 + (1 + 4 - 4) + (9 + 1 - 6))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    assert frechet_distance(*gaussian(x), *gaussian(x)) == pytest.approx(0.0, abs=1e-6)


def test_captions_from_text_csv_or_jsonl(tmp_path):
    (tmp_path / "c.txt").write_text("a cat\n\na dog\n")
    (tmp_path / "c.jsonl").write_text('{"caption": "x"}\n{"caption": "y"}\n')
    (tmp_path / "c.csv").write_text("image_id,caption\n1,first\n2,second\n")
    assert read_captions(str(tmp_path / "c.txt"), 5) == ["a cat", "a dog"]
    assert read_captions(str(tmp_path / "c.jsonl"), 1) == ["x"]
    assert read_captions(str(tmp_path / "c.csv"), 5) == ["first", "second"]
