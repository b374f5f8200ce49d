"""Prompt formats and QA encoding (runner/data/qa.py): every hub model renders its reference prompt."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from runner.data.qa import IGNORE, PromptFormat, encode_qa
from tests.conftest import ROOT

CONF = ROOT / "conf" / "model"


Q, A = "Who wrote 'The Silent Harbor'?", "It was written by Mara Lindqvist."


SYS3 = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"


USER3 = f"<|start_header_id|>user<|end_header_id|>\n\n{Q}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"


# rendered by hand from open-unlearning's configs/model/*.yaml template_args (and, where those say
# apply_chat_template: true, from the model's own chat template with that system prompt and date)
REFERENCE = {
    "llama2-7b-chat": (f"[INST] {Q} [/INST]{A}", True),
    "llama-3.2-1b-instruct": (f"{SYS3}You are a helpful assistant.<|eot_id|>{USER3}{A}", True),
    "llama-3.2-3b-instruct": (
        f"{SYS3}Cutting Knowledge Date: December 2023\nToday Date: 10 Apr 2025\n\n"
        f"You are a helpful assistant.<|eot_id|>{USER3}{A}<|eot_id|>",
        False,
    ),
    "zephyr-7b-beta": (
        f"<|system|>\nYou are a helpful assistant.</s>\n<|user|>\n{Q}</s>\n<|assistant|>\n{A}</s>\n",
        False,
    ),
    # not in open-unlearning: DeepSeek-R1 distills' chat template (user turn; the tokenizer adds BOS),
    # Mistral's chat template, and TOFU's own phi format
    "deepseek-r1-distill-llama-8b": (f"<｜User｜>{Q}<｜Assistant｜>{A}", True),
    "deepseek-r1-distill-qwen-1.5b": (f"<｜User｜>{Q}<｜Assistant｜>{A}", True),
    "deepseek-r1-distill-qwen-7b": (f"<｜User｜>{Q}<｜Assistant｜>{A}", True),
    "deepseek-r1-distill-qwen-14b": (f"<｜User｜>{Q}<｜Assistant｜>{A}", True),
    "mistral-7b-instruct": (f"[INST] {Q} [/INST]{A}", True),
    "phi-1.5": (f"Question: {Q}\nAnswer: {A}", True),
    # distillation students (task=distill): Qwen2.5's chat template, its default system prompt, and
    # Qwen2.5-Math's chain-of-thought one
    "qwen2.5-1.5b-instruct": (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{Q}<|im_end|>\n<|im_start|>assistant\n{A}",
        False,
    ),
    "qwen2.5-math-1.5b": (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        f"<|im_start|>user\n{Q}<|im_end|>\n<|im_start|>assistant\n{A}",
        False,
    ),
}


HUB_MODELS = sorted(p.stem for p in CONF.glob("*.yaml") if OmegaConf.load(p).source == "hub")


def test_every_hub_model_has_a_reference_prompt():
    assert set(HUB_MODELS) <= set(REFERENCE), "add the new model's reference rendering to REFERENCE"


@pytest.mark.parametrize("name", HUB_MODELS)
def test_rendered_prompt_equals_the_reference(name):
    fmt = PromptFormat.from_cfg(OmegaConf.load(CONF / f"{name}.yaml").prompt)
    text, special_tokens = REFERENCE[name]
    assert fmt.render(Q, A) == text
    assert fmt.special_tokens is special_tokens


class _CharTokenizer:
    """Characters as ids, BOS 1 / EOS 2 when asked for: enough to see which special tokens are added."""

    eos_token_id = 2

    def __call__(self, text, add_special_tokens=True):
        ids = [ord(c) for c in text.replace("</s>", "\x02")]
        return {"input_ids": ([1] if add_special_tokens else []) + ids}


def test_chat_formats_get_no_second_bos_and_no_second_eos():
    tok = _CharTokenizer()
    plain = encode_qa(tok, PromptFormat("Q: {question}\nA: ", "{answer}"), "q", "a", 64)
    assert plain["input_ids"][0] == 1 and plain["input_ids"][-1] == 2
    chat = encode_qa(tok, PromptFormat("<u>{question}</s>", "{answer}</s>", special_tokens=False), "q", "a", 64)
    assert chat["input_ids"][0] != 1
    assert chat["input_ids"][-2:] == [ord("a"), 2]  # the answer's own EOS closes it; none appended


def test_answer_tokens_survive_a_merge_across_the_prompt_boundary():
    from runner.models import _train_tiny_tokenizer

    tok = _train_tiny_tokenizer(512)
    fmt = PromptFormat(question="Question: {question}\nAnswer: ", answer="{answer}")  # trailing space
    enc = encode_qa(tok, fmt, "Who wrote it?", "The author did.", max_length=128)
    answer_ids = [t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != IGNORE]
    assert tok.decode(answer_ids[:-1]).strip() == "The author did."
    assert answer_ids[-1] == tok.eos_token_id
