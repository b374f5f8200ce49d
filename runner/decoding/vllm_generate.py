"""Reasoning benchmarks and traces through vLLM (``generation.backend=vllm``), with the runner's strategies.

The model in memory (possibly just unlearned) is written once to a temporary directory and loaded by
``vllm.LLM``. Each sample is its own request (``n`` requests per problem, seeds ``seed + k``), so that a
strategy's logits processors, built fresh per request, see exactly one row: they run as vLLM's
per-request ``logits_processors`` (called with the tokens generated so far and the next-token logits),
adapted to the transformers signature (the prompt and generated tokens as one ``(1, T)`` row). Sampling
settings are the strategy's (temperature, top-p, no top-k); the record is the one the HF loop writes.

vLLM releases whose ``SamplingParams`` has no ``logits_processors`` (the V1 engine) can run plain
greedy or sampled decoding only; a strategy with processors is refused there, naming the release.
"""

from __future__ import annotations

import inspect
import tempfile

import torch

from runner.errors import ConfigError


class _OneRow:
    """A transformers-style processor list as a vLLM per-request processor ``(output_ids, logits) -> logits``."""

    def __init__(self, prompt: list[int], processors: list):
        self.prompt, self.processors = prompt, processors

    def __call__(self, output_ids, logits):
        ids = torch.tensor([self.prompt + list(output_ids)], dtype=torch.long, device=logits.device)
        scores = logits[None].float()
        for processor in self.processors:
            scores = processor(ids, scores)
        return scores[0].to(logits.dtype)


def _llm(model, tokenizer, precision: str):
    """The model's vLLM engine, built once per model (kept on it, like the static decoder)."""
    from vllm import LLM

    if "_runner_vllm" not in model.__dict__:
        folder = tempfile.mkdtemp(prefix="runner-vllm-")
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        dtype = "bfloat16" if precision == "bf16" else "float32"
        model.__dict__["_runner_vllm"] = LLM(model=folder, dtype=dtype, gpu_memory_utilization=0.5)
    return model.__dict__["_runner_vllm"]


def generate_vllm(
    model, tokenizer, prompts, strategy, ctx, max_new_tokens: int, eos: set[int], precision: str, observers=None
) -> list[list[list[int]]]:
    """Per prompt, ``strategy.n`` token lists cut before the first end-of-sequence token."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    takes_processors = "logits_processors" in inspect.signature(SamplingParams).parameters
    kw = strategy.generate_kwargs()
    requests, params, watchers = [], [], []
    for prompt in prompts:
        for k in range(strategy.n):
            processors = strategy.processors(ctx)
            watching = observers() if observers else []
            watchers += watching
            if (processors or watching) and not takes_processors:
                import vllm

                raise ConfigError(
                    "generation.backend",
                    f"vllm {vllm.__version__} takes no per-request logits processors, which decoding={strategy.name} "
                    "needs",
                    "use generation.backend=hf for this strategy, or a vllm release with SamplingParams.logits_processors",
                )
            extra = {"logits_processors": [_OneRow(prompt, [*processors, *watching])]} if takes_processors else {}
            params.append(
                SamplingParams(
                    n=1,
                    temperature=float(kw["temperature"]) if kw["do_sample"] else 0.0,
                    top_p=float(kw.get("top_p") or 1.0),
                    top_k=-1,
                    seed=strategy.seed + k if kw["do_sample"] else None,
                    max_tokens=max_new_tokens,
                    stop_token_ids=sorted(eos),
                    **extra,
                )
            )
            requests.append(TokensPrompt(prompt_token_ids=list(prompt)))
    results = _llm(model, tokenizer, precision).generate(requests, params, use_tqdm=True)
    for watcher in watchers:
        watcher.flush()
    out = [[] for _ in prompts]
    for i, result in enumerate(results):
        ids = list(result.outputs[0].token_ids)
        cut = next((j for j, t in enumerate(ids) if t in eos), len(ids))
        out[i // strategy.n].append(ids[:cut])
    return out
