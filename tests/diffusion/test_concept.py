import pytest
from omegaconf import OmegaConf
from PIL import Image

from runner.diffusion import concept
from runner.errors import ConfigError
from tests.conftest import compose_cfg


def _node(**changes):
    node = compose_cfg("task=diffusion_attack").concept
    for key, value in changes.items():
        OmegaConf.update(node, key, value, merge=False)
    return node


def test_prompts_from_a_csv_or_text_file(tmp_path):
    csv_file = tmp_path / "p.csv"
    csv_file.write_text('prompt,nudity_percentage\n"a, b",80\nsecond,60\n\n')
    assert concept.prompts(_node(prompts_file=str(csv_file))) == ["a, b", "second"]
    txt = tmp_path / "p.txt"
    txt.write_text("one\n\ntwo\nthree\n")
    assert concept.prompts(_node(prompts_file=str(txt), max_prompts=2)) == ["one", "two"]
    bad = tmp_path / "bad.csv"
    bad.write_text("text\nx\n")
    with pytest.raises(ConfigError) as err:
        concept.prompts(_node(prompts_file=str(bad)))
    assert err.value.key == "concept.prompts_file"


def test_synthetic_images_are_deterministic_red_shapes():
    a = concept.synthetic_images(3, 16, "circle", (220, 40, 40), seed=4)
    b = concept.synthetic_images(3, 16, "circle", (220, 40, 40), seed=4)
    assert [im.tobytes() for im in a] == [im.tobytes() for im in b]
    assert all(im.size == (16, 16) and (220, 40, 40) in [c for _, c in im.getcolors()] for im in a)
    tensor = concept.to_tensor(a)
    assert tensor.shape == (3, 3, 16, 16) and float(tensor.min()) >= -1.0 and float(tensor.max()) <= 1.0


def test_a_directory_of_images_is_cropped_to_squares(tmp_path):
    Image.new("RGB", (40, 20), (10, 200, 10)).save(tmp_path / "b.png")
    Image.new("RGB", (30, 30), (200, 10, 10)).save(tmp_path / "a.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    node = _node(**{"images.source": "dir", "images.dir": str(tmp_path)})
    concept.check(node)
    ims = concept._from_dir(tmp_path, 10, 16)
    assert [im.size for im in ims] == [(16, 16), (16, 16)] and ims[0].getpixel((8, 8))[0] > 150  # a.jpg first
    with pytest.raises(ConfigError) as err:
        concept.check(_node(**{"images.source": "dir", "images.dir": str(tmp_path / "none")}))
    assert err.value.key == "concept.images.dir"
