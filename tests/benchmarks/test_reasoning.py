"""The reasoning benchmark (runner/benchmarks/reasoning.py): its prompts follow the model."""

from __future__ import annotations

from runner.benchmarks.reasoning import reasoning_prompt
from runner.data.qa import PromptFormat
from tests.conftest import compose_cfg


def _bench(name: str, *overrides: str):
    return compose_cfg("method=none", f"benchmark={name}", *overrides).benchmark


def test_prompts_follow_the_model_and_cyclicreflex_release():
    instruction = str(_bench("math500").instruction)
    deepseek = PromptFormat.from_cfg(compose_cfg("model=deepseek-r1-distill-qwen-1.5b").model.prompt)
    assert deepseek.think_end == "</think>"
    assert reasoning_prompt(deepseek, instruction, "What is 1+1?") == (
        "You are a helpful AI bot that answers questions for a user. Keep your response short and direct. "
        "<｜User｜>Question: What is 1+1?\nLet's reason this step by step.\nAnswer: <think>"
    )
    smol = PromptFormat.from_cfg(compose_cfg().model.prompt)  # no reasoning prompt: its chat turn
    assert smol.think_end is None
    assert reasoning_prompt(smol, instruction, "What is 1+1?") == (
        "<|im_start|>user\nQuestion: What is 1+1?\nLet's reason this step by step.\nAnswer:<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    for name in ("deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-llama-8b"):
        assert PromptFormat.from_cfg(compose_cfg(f"model={name}").model.prompt) == deepseek
