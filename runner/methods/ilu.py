"""ILU, invariant LLM unlearning: unlearn so that later fine-tuning has nothing to undo.

loss = L_unlearn(theta) + lam * sum_i || grad_w l_i(w o theta) |_{w=1} ||^2

l_i is the ordinary fine-tuning loss (answer NLL) on environment data set i
(default GSM8K). The IRM-style penalty is small when fine-tuning on D_i
barely moves the model away from the unlearned solution. Two readings of w:

    elementwise:  grad_w = theta (.) grad_theta l_i          (one weight per parameter)
    scalar:       grad_w = <theta, grad_theta l_i>            (one weight for the model)

theta is the set of trainable parameters. Minimising the penalty needs its
own gradient, a second-order term: the environment gradient is taken with
``create_graph=True`` and the penalty is back-propagated through it (double
backward). L_unlearn is the ``base`` method's loss (NPO or RMU).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from runner.components import build
from runner.data.files import read_jsonl
from runner.data.qa import IGNORE, collate_qa, encode_qa
from runner.errors import ConfigError
from runner.methods.base import ForgetRetainMethod, Method, require_single_process
from runner.options import Range
from runner.scoring import mean_nll

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
ENVIRONMENTS = {"gsm8k": DATA_DIR / "gsm8k" / "train.jsonl"}


def invariance_penalty(params: list[torch.Tensor], grads: list[torch.Tensor], reading: str) -> torch.Tensor:
    """|| grad_w l(w o theta) at w=1 ||^2 from theta and grad_theta l."""
    if reading == "elementwise":
        return sum((p * g).pow(2).sum() for p, g in zip(params, grads, strict=True))
    return sum((p * g).sum() for p, g in zip(params, grads, strict=True)).pow(2)


def load_environment(name: str, limit: int, seed: int) -> list[dict]:
    """``limit`` rows ({"question", "answer"}) of an environment data set, drawn with ``seed``."""
    path = ENVIRONMENTS.get(name)
    if path is None:
        raise ConfigError("method.environments", f"unknown environment `{name}`", f"use one of {sorted(ENVIRONMENTS)}")
    rows = [{"question": r["question"], "answer": r["answer"]} for r in read_jsonl(path, "method.environments")]
    return random.Random(seed).sample(rows, min(limit, len(rows)))


class ILU(Method):
    # the invariance penalty differentiates whole gradients of the trainable parameters (checked at start-up)
    strategies = ("none",)
    strategies_reason = "its penalty needs whole gradients of the trainable parameters in one process"
    option_ranges = {
        "lam": Range(low=0, example="1.0"),
        "env_examples": Range(low=1, whole=True, example="64"),
        "env_batch_size": Range(low=1, whole=True, example="4"),
        "env_max_length": Range(low=1, whole=True, example="512"),
    }

    @staticmethod
    def inputs(method_cfg) -> list:
        from runner.inputs import Input

        return [
            Input.file("method.environments", ENVIRONMENTS[str(e)])
            for e in method_cfg.get("environments", ())
            if str(e) in ENVIRONMENTS
        ]

    def __init__(
        self,
        base: dict,
        lam: float = 1.0,
        reading: str = "elementwise",
        environments: tuple[str, ...] = ("gsm8k",),
        env_examples: int = 64,
        env_batch_size: int = 4,
        env_max_length: int = 512,
    ):
        if reading not in ("elementwise", "scalar"):
            raise ConfigError("method.reading", f"`{reading}` is not a reading of w", "use elementwise or scalar")
        # the base is a method config node (conf/method/ilu.yaml composes conf/method/npo.yaml into it)
        self.base = build(base, ForgetRetainMethod, "method.base")
        self.lam, self.reading = lam, reading
        self.environments = list(environments)
        self.env_examples, self.env_batch_size, self.env_max_length = env_examples, env_batch_size, env_max_length
        self.env_data: dict[str, list[dict]] = {}
        self.rng = random.Random(0)
        self.pad_id = 0

    def select_trainable(self, model) -> None:
        self.base.select_trainable(model)

    def prepare(self, data) -> None:
        require_single_process("ILU")
        self.base.prepare(data)
        self.pad_id = data.pad_id
        self.rng = random.Random(data.seed)
        for name in self.environments:
            self.env_data[name] = self._encode_environment(name, data)

    def _encode_environment(self, name: str, data) -> list[dict]:
        """The environment's QA rows in the model's prompt format, whatever the benchmark's rows are (WMDP's are
        text); a row cut so short that no answer token is left would add nothing to the penalty, so none may be."""
        rows = load_environment(name, self.env_examples, data.seed)
        encoded = [encode_qa(data.tokenizer, data.fmt, r["question"], r["answer"], self.env_max_length) for r in rows]
        empty = sum(1 for e in encoded if all(label == IGNORE for label in e["labels"]))
        if empty:
            raise ConfigError(
                "method.env_max_length",
                f"{empty} of {len(rows)} {name} rows keep no answer token within {self.env_max_length} tokens",
                "raise method.env_max_length",
            )
        if len(encoded) < self.env_batch_size:
            raise ConfigError(
                "method.env_batch_size",
                f"{name} has {len(encoded)} rows for batches of {self.env_batch_size}",
                "raise method.env_examples or lower method.env_batch_size",
            )
        return encoded

    def penalty(self, model, device) -> torch.Tensor:
        params = [p for p in model.parameters() if p.requires_grad]
        total = torch.zeros((), device=device)
        for examples in self.env_data.values():
            batch = {
                k: v.to(device)
                for k, v in collate_qa(self.rng.sample(examples, self.env_batch_size), self.pad_id).items()
            }
            # fused attention kernels have no double backward: the penalty's forward uses the math kernel
            with sdpa_kernel(SDPBackend.MATH):
                env_loss = mean_nll(model, batch)
            grads = torch.autograd.grad(env_loss, params, create_graph=True, allow_unused=True)
            pairs = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None]
            total = total + invariance_penalty([p for p, _ in pairs], [g for _, g in pairs], self.reading)
        return total

    def loss(self, model, batch):
        base_loss, terms = self.base.loss(model, batch)
        penalty = self.penalty(model, base_loss.device)
        return base_loss + self.lam * penalty, {**terms, "ilu_penalty": penalty.item()}
