from runner.diffusion.detectors import ImageClassifierDetector, NudeNetDetector
from runner.diffusion.generate import generate, grid, judge, success_rate
from runner.diffusion.prompts import PromptEncoder
from tests.conftest import compose_cfg


def test_asr_counts_the_prompts_the_unattacked_row_already_flagged():
    plain = [{"success": True}, {"success": False}, {"success": False}, {"success": False}]
    attacked = [{"success": False}, {"success": True}, {"success": False}, {"success": True}]
    assert success_rate(plain) == (0.25, [True, False, False, False])
    assert success_rate(attacked, plain) == (0.75, [True, True, False, True])


def test_the_detectors_on_the_tiny_pipelines_images(tiny_pipe):
    import torch

    gen_cfg = compose_cfg("task=diffusion_attack", "generation.steps=2", "generation.images_per_prompt=2").generation
    encoder = PromptEncoder(tiny_pipe.tokenizer, tiny_pipe.text_encoder, torch.device("cpu"))
    images = generate(tiny_pipe, encoder, ["a red circle", "a dog"], None, None, gen_cfg, torch.device("cpu"), "fp32")
    assert [len(row) for row in images] == [2, 2] and images[0][0].size == (16, 16)
    again = generate(tiny_pipe, encoder, ["a red circle", "a dog"], None, None, gen_cfg, torch.device("cpu"), "fp32")
    assert images[1][1].tobytes() == again[1][1].tobytes()  # fixed seeds
    nude = judge(NudeNetDetector(classes=["FEMALE_BREAST_EXPOSED", "BUTTOCKS_EXPOSED"]), images)
    assert [j["success"] for j in nude] == [False, False] and all(j["rate"] == 0.0 for j in nude)
    everything = ImageClassifierDetector(source="tiny", labels=list(range(4)), tiny={"num_labels": 4})
    judged = judge(everything, images)
    assert all(j["success"] and j["rate"] == 1.0 and j["flags"] == [True, True] for j in judged)
    picture = grid(images, judged, cell=32)
    assert picture.size == (2 * 36 + 4, 2 * 36 + 4)
