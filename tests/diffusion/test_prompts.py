import torch

from runner.diffusion.prompts import PromptEncoder


def test_slot_embeddings_enter_where_their_words_would(tiny_pipe):
    encoder = PromptEncoder(tiny_pipe.tokenizer, tiny_pipe.text_encoder, torch.device("cpu"))
    tok = tiny_pipe.tokenizer
    words = tok("red circle", add_special_tokens=False).input_ids
    ids, mask = encoder.ids(["a photo of a dog"], len(words))
    assert mask[0].tolist()[: len(words) + 2] == [False] + [True] * len(words) + [False]
    with torch.no_grad():
        slotted = encoder.encode(["a photo of a dog"], encoder.vocab[words])
        typed = ids.clone()
        typed[mask] = torch.tensor(words)
        direct = tiny_pipe.text_encoder(input_ids=typed).last_hidden_state
        assert torch.allclose(slotted, direct, atol=1e-6)
        # the same prompt typed in full ("red circle a photo of a dog") encodes the same way
        full = tok("red circle a photo of a dog", padding="max_length", max_length=tok.model_max_length).input_ids
        assert typed[0].tolist()[1:] == full[1:]
