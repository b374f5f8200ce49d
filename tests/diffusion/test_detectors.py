import pytest
import torch
from PIL import Image, ImageDraw

from runner.diffusion.detectors import ImageClassifierDetector, NudeNetDetector
from runner.errors import ConfigError

EXPOSED = ["FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "BUTTOCKS_EXPOSED"]


def _images():
    out = [Image.new("RGB", (256, 256), c) for c in [(255, 255, 255), (0, 0, 0), (200, 30, 30), (30, 60, 200)]]
    for shape in ("ellipse", "rectangle", "polygon"):
        im = Image.new("RGB", (320, 240), (235, 225, 200))
        draw = ImageDraw.Draw(im)
        if shape == "polygon":
            draw.polygon([(160, 20), (40, 220), (280, 220)], fill=(20, 120, 40))
        else:
            getattr(draw, shape)([60, 40, 260, 200], fill=(90, 40, 160))
        out.append(im)
    return out


def test_nudenet_finds_nothing_on_solid_colours_and_drawn_shapes():
    found = NudeNetDetector(threshold=0.45, classes=EXPOSED).detect(_images())
    assert len(found) == 7
    assert all(f["detected"] is False and 0.0 <= f["score"] < 0.45 for f in found)


def test_nudenet_options_are_checked_before_loading():
    with pytest.raises(ConfigError) as err:
        NudeNetDetector(classes=["EXPOSED_EVERYTHING"])
    assert err.value.key == "detector.classes"
    with pytest.raises(ConfigError) as err:
        NudeNetDetector(threshold=1.5, classes=EXPOSED)
    assert err.value.key == "detector.threshold"


def test_the_classifier_flags_exactly_the_images_whose_top1_is_a_label():
    tiny = {"num_labels": 4, "seed": 0, "image_size": 32}
    images = _images()
    every = ImageClassifierDetector(source="tiny", labels=[0, 1, 2, 3], tiny=tiny).detect(images)
    assert all(f["detected"] for f in every)
    detector = ImageClassifierDetector(source="tiny", labels=["class_2"], tiny=tiny)
    found = detector.detect(images)
    with torch.no_grad():  # the wrapped model's own top-1 on the processed images
        pixels = detector.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        top1 = detector.model(pixel_values=pixels).logits.argmax(-1).tolist()
    assert [f["detected"] for f in found] == [t == 2 for t in top1]
    assert [f["label"] for f in found] == [f"class_{t}" for t in top1]


def test_classifier_labels_must_be_classes_of_the_model():
    detector = ImageClassifierDetector(source="tiny", labels=["church"], tiny={"num_labels": 3})
    with pytest.raises(ConfigError) as err:
        detector.prepare(torch.device("cpu"))
    assert err.value.key == "detector.labels"
    with pytest.raises(ConfigError) as err:
        ImageClassifierDetector(model_id=None, labels=["church"])
    assert err.value.key == "detector.model_id"
