import pytest
from omegaconf import OmegaConf

from runner.diffusion.pipeline import TINY_WORDS, load_pipeline, tiny_tokenizer
from runner.errors import ConfigError


def test_the_tiny_tokenizer_has_every_word_whole():
    tok = tiny_tokenizer(16)
    vocab = tok.get_vocab()
    assert all(f"{w}</w>" in vocab for w in TINY_WORDS)
    ids = tok("A photo of a red circle").input_ids
    assert tok.convert_ids_to_tokens(ids) == [
        "<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "red</w>", "circle</w>", "<|endoftext|>"
    ]  # fmt: skip
    assert tiny_tokenizer(16).get_vocab() == vocab  # read from data/tiny_clip: the same ids every time


def test_a_pipeline_that_cannot_be_loaded_is_a_config_error(tmp_path):
    node = OmegaConf.create(
        {"source": "hub", "id": str(tmp_path), "revision": None, "text_encoder": None, "unet": None}
    )
    with pytest.raises(ConfigError) as err:
        load_pipeline(node, "cpu")
    assert err.value.key == "diffusion_model.id"
    with pytest.raises(ConfigError) as err:
        load_pipeline(node, "cpu", scheduler="euler")
    assert err.value.key == "generation.scheduler"
