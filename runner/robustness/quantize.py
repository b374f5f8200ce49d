"""Quantization attack: reload the weights quantized and ask again (Zhang et al., 2024, arXiv 2410.16454).

Unlearning with a small learning rate moves weights by less than a 4-bit quantization step, so
rounding can put them back where the target model had them. The model is copied and the copy's
linear layers quantized (weights only; activations stay in the compute precision); the control
is the target model quantized the same way, so rounding noise alone is not read as recovery.

Backends: ``quanto`` (optimum-quanto: int8 / int4 weights, per-output-channel scales; runs on
CPU and GPU) and ``bitsandbytes`` (8-bit LLM.int8 / 4-bit NF4 weights; CUDA only).
"""

from __future__ import annotations

import copy
import gc
import tempfile
import types

import torch
import torch.nn.functional as F

from runner.errors import ConfigError
from runner.robustness.base import KEY, ProbeContext, QAProbe, answer_rouge, as_list, evaluated, split_answer

BITS = {"quanto": (8, 4), "bitsandbytes": (8, 4)}


class QuantizeAttack(QAProbe):
    """``bits``: one width or a list (8, 4); ``backend``: quanto or bitsandbytes; ``exclude``: module names kept in
    full precision (``lm_head``: the tied output embedding)."""

    def __init__(
        self, name: str = "quantize", bits=(8, 4), backend: str = "quanto", exclude=("lm_head",), questions: int = 20
    ):
        super().__init__(name, questions)
        if backend not in BITS:
            raise ConfigError(self.key("backend"), f"`{backend}` is not a backend", "use quanto or bitsandbytes")
        self.bits, self.backend, self.exclude = [int(b) for b in as_list(bits)], backend, list(exclude or [])
        for b in self.bits:
            if b not in BITS[backend]:
                raise ConfigError(
                    self.key("bits"),
                    f"{backend} cannot quantize to {b} bits",
                    f"use {' or '.join(map(str, BITS[backend]))}",
                )
        if backend == "bitsandbytes" and not torch.cuda.is_available():
            raise ConfigError(
                self.key("backend"),
                "bitsandbytes quantizes on a CUDA GPU only, and this machine has none",
                f"use {KEY}.{name}.backend=quanto (int8 / int4 on CPU)",
            )

    def run(self, ctx: ProbeContext) -> list[dict]:
        rows = evaluated(ctx.rows, self.questions)
        prompts = [split_answer(ctx.tokenizer, ctx.fmt, r["question"], r["answer"], ctx.max_length)[0] for r in rows]
        points = []
        for bits in self.bits:
            quantized = quantized_copy(ctx.model, bits, self.backend, self.exclude)
            try:
                probe = ProbeContext(**{**ctx.__dict__, "model": quantized})
                scores = answer_rouge(
                    probe, prompts, [r["answer"] for r in rows], f"quantize int{bits} ({ctx.model_kind})"
                )
            finally:
                del quantized
                gc.collect()
            label = "nf4" if self.backend == "bitsandbytes" and bits == 4 else f"int{bits}"
            points.append({"setting": label, "strength": bits, "value": sum(scores) / len(scores)})
        return points


def quantized_copy(model, bits: int, backend: str, exclude: list[str]):
    """A copy of ``model`` with its linear layers' weights quantized to ``bits``; ``model`` is untouched."""
    if backend == "quanto":
        from optimum.quanto import QLinear, freeze, qint4, qint8, quantize

        quantized = copy.deepcopy(model)
        quantize(quantized, weights={8: qint8, 4: qint4}[bits], exclude=exclude or None)
        freeze(quantized)  # weights stored as int8 / packed int4 with their scales, not re-quantized each call
        for module in quantized.modules():
            if isinstance(module, QLinear):
                module.forward = types.MethodType(_dequantized_linear, module)
        return quantized.eval()
    return _bitsandbytes_copy(model, bits, exclude)


def _dequantized_linear(self, x):
    """A quanto linear layer's product with its stored weights expanded to the compute dtype (what quanto's own CPU
    path computes): quanto's packed int4 weight cannot be transposed under ``torch.inference_mode``, which the
    runner's generation uses."""
    return F.linear(x, self.qweight.dequantize().to(x.dtype), self.bias)


def _bitsandbytes_copy(model, bits: int, exclude: list[str]):
    """bitsandbytes quantizes while loading: the weights go through a temporary directory."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    config = (
        BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", llm_int8_skip_modules=exclude)
        if bits == 4
        else BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=exclude)
    )
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return AutoModelForCausalLM.from_pretrained(folder, quantization_config=config, device_map={"": 0}).eval()
