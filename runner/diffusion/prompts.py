"""Prompts with attack-token slots, encoded by the frozen text encoder.

A prompt with K slots is tokenised as ``<bos> s_1 .. s_K <prompt tokens> <eos> <pad>..``: the attack
tokens come first, as UnlearnDiffAtk prepends its adversarial tokens (the subspace paper does not say
where its tokens go; prefix is our choice). The slots hold ``<bos>`` ids in ``input_ids`` (so CLIP's
end-of-text pooling is untouched) and their embeddings are replaced by the attack's in a forward hook
on the text encoder's token-embedding layer; the same hook applies a defence's projection to every
token embedding looked up (slots included). Position embeddings and the transformer are the
library's own, and gradients reach the slot embeddings through the hook.
"""

from __future__ import annotations

import contextlib

import torch


class PromptEncoder:
    def __init__(self, tokenizer, text_encoder, device: torch.device):
        self.tokenizer, self.text_encoder, self.device = tokenizer, text_encoder, device
        self.max_length = int(tokenizer.model_max_length)
        self.embedding = text_encoder.get_input_embeddings()

    @property
    def vocab(self) -> torch.Tensor:
        return self.embedding.weight

    def ids(self, prompts: list[str], n_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids [B, L], slot mask [B, L]); a prompt too long for the slots is cut at the end."""
        tok = self.tokenizer
        rows, masks = [], []
        room = self.max_length - 2 - n_slots
        if room < 0:
            raise ValueError(f"{n_slots} attack tokens do not fit in the text encoder's {self.max_length} positions")
        for prompt in prompts:
            body = tok(prompt, add_special_tokens=False).input_ids[:room]
            row = [tok.bos_token_id] * (1 + n_slots) + body + [tok.eos_token_id]
            row += [tok.pad_token_id] * (self.max_length - len(row))
            rows.append(row)
            masks.append([False] + [True] * n_slots + [False] * (self.max_length - 1 - n_slots))
        return torch.tensor(rows, device=self.device), torch.tensor(masks, device=self.device)

    @contextlib.contextmanager
    def hooked(self, mask: torch.Tensor | None, slots: torch.Tensor | None, defense=None):
        def hook(module, args, output):
            out = output
            if slots is not None:
                filled = slots.to(out.dtype).unsqueeze(0).expand(out.shape[0], -1, -1)
                out = out.masked_scatter(mask.unsqueeze(-1), filled.reshape(-1, out.shape[-1]))
            if defense is not None:
                out = defense.project(out)
            return out

        handle = self.embedding.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def encode(self, prompts: list[str], slots: torch.Tensor | None = None, defense=None) -> torch.Tensor:
        """The text encoder's last hidden states [B, L, d] (Stable Diffusion's conditioning)."""
        n = 0 if slots is None else slots.shape[0]
        ids, mask = self.ids(prompts, n)
        with self.hooked(mask, slots if n else None, defense):
            return self.text_encoder(input_ids=ids).last_hidden_state
