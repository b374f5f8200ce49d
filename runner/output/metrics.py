"""What every number a job records means to a reader: its name, which way is better, its label.

The one place the output side learns this. The console table takes its arrows from here, the
report its column labels, arrows and the direction that picks the bold value, the trackers the
goal they give a final metric. A benchmark's ``summarize()`` returns the numbers only; a report
preset (``conf/report/*.yaml``) chooses which of them to show, how scaled and how rounded.

``CHOICE_LABELS`` are the display names of config choices (methods, benchmarks, decodings) that
form the report's row labels and the plots' legends.
"""

from __future__ import annotations

from dataclasses import dataclass

# better is: larger (up), smaller (down), closer to zero (zero), neither (none: a count or a length)
ARROWS = {"up": "↑", "down": "↓", "zero": "→0", "none": ""}


@dataclass(frozen=True)
class MetricSpec:
    name: str  # the key in results.json: metrics.<model>.<name>, or a dotted key of the record
    direction: str
    label: str
    when_null: str = ""  # why the metric can be null (recorded as the null's reason); "" = it is always a number

    def __post_init__(self):
        if self.direction not in ARROWS:
            raise ValueError(f"{self.name}: direction `{self.direction}` is not one of {list(ARROWS)}")

    @property
    def arrow(self) -> str:
        return ARROWS[self.direction]


# a rate over the generated tokens a phase or window selects: none selected, no rate
_NO_TOKENS = "no generated token falls in the positions this rate counts"


def _declare(*specs: MetricSpec) -> dict[str, MetricSpec]:
    return {s.name: s for s in specs}


def _reasoning_specs(name: str) -> list[MetricSpec]:
    label = f"WMDP-{name.capitalize()}"
    return [
        MetricSpec(f"wmdp_{name}_reasoning", "down", f"{label} w/ reasoning"),
        MetricSpec(f"wmdp_{name}_trace_leak", "down", f"{label} trace leak (rule)"),
        MetricSpec(f"wmdp_{name}_trace_leak_judge", "down", f"{label} trace leak (judge)"),
        MetricSpec(f"wmdp_{name}_reasoning_unparseable", "none", f"{label} unparseable answers"),
        MetricSpec(f"wmdp_{name}_judge_unparseable", "none", f"{label} unparseable verdicts"),
    ]


_SUITES = {"math500": "MATH-500", "gsm8k": "GSM8K", "aime24": "AIME24", "aime25": "AIME25", "amc23": "AMC23"}


def _utility_specs(name: str, label: str) -> list[MetricSpec]:
    return [
        MetricSpec(f"{name}_accuracy", "up", label),
        MetricSpec(f"{name}_mean_length", "none", f"{label} length (tokens)"),
    ]


METRICS = _declare(
    # TOFU (runner/benchmarks/tofu.py)
    MetricSpec("forget_quality", "up", "Forget Quality"),
    MetricSpec("model_utility", "up", "Model Utility"),
    MetricSpec("forget_prob", "down", "Forget Prob."),
    MetricSpec("forget_rouge", "down", "Forget ROUGE"),
    MetricSpec("forget_truth_ratio", "up", "Forget Truth Ratio"),
    MetricSpec("retain_prob", "up", "Retain Prob."),
    MetricSpec("retain_rouge", "up", "Retain ROUGE"),
    # privacy and memorisation, TOFU and MUSE (runner/benchmarks/privacy.py, docs/metrics.md). An MIA AUC is
    # best at the retain model's value (about 0.5), so it has no direction; PrivLeak (below) is best at 0
    MetricSpec("exact_memorization", "down", "Exact Mem."),
    MetricSpec("extraction_strength", "down", "Extraction Strength"),
    MetricSpec("gibberish", "up", "Gibberish (clean)"),
    MetricSpec("mia_loss", "none", "MIA LOSS AUC"),
    MetricSpec("mia_zlib", "none", "MIA ZLib AUC"),
    MetricSpec("mia_min_k", "none", "MIA Min-K% AUC"),
    MetricSpec("mia_min_k_plus_plus", "none", "MIA Min-K%++ AUC"),
    MetricSpec("mia_gradnorm_1", "none", "MIA GradNorm-1 AUC"),
    MetricSpec("mia_gradnorm_2", "none", "MIA GradNorm-2 AUC"),
    MetricSpec("mia_gradnorm_inf", "none", "MIA GradNorm-inf AUC"),
    MetricSpec("mia_reference", "none", "MIA Reference AUC"),
    # WMDP and MMLU accuracies (runner/benchmarks/wmdp.py, mmlu.py): the hazardous knowledge should go
    MetricSpec("wmdp_bio", "down", "WMDP-Bio"),
    MetricSpec("wmdp_cyber", "down", "WMDP-Cyber"),
    MetricSpec("wmdp_chem", "down", "WMDP-Chem"),
    MetricSpec("mmlu", "up", "MMLU"),
    # WMDP answered with a chain of thought (benchmark.reasoning, runner/benchmarks/wmdp_reasoning.py): the
    # stated answer and the trace's leaks of it should go; the unparseable counts say what the rates rest on
    *(spec for name in ("bio", "cyber", "chem") for spec in _reasoning_specs(name)),
    # MUSE (runner/benchmarks/muse.py), named as in its paper; PrivLeak is best near 0 (neither over-
    # nor under-unlearned), its AUC is the raw membership-inference score behind it
    MetricSpec("verbmem_forget", "down", "VerbMem on D_f"),
    MetricSpec("knowmem_forget", "down", "KnowMem on D_f"),
    MetricSpec("knowmem_retain", "up", "KnowMem on D_r"),
    MetricSpec(
        "privleak",
        "zero",
        "PrivLeak",
        "no retrain AUC to compare with (benchmark.privleak.retrain_auc unset and no retain model), or one of 0",
    ),
    MetricSpec("privleak_auc", "none", "PrivLeak AUC"),
    # reasoning benchmarks (runner/benchmarks/reasoning.py): accuracy is the score; lengths and
    # reflection statistics describe how the model answered, neither better up nor down
    MetricSpec("accuracy", "up", "Accuracy"),
    *(MetricSpec(f"pass@{k}", "up", f"pass@{k}") for k in (1, 2, 4, 8, 16, 32, 64)),
    MetricSpec("mean_length", "none", "Length (tokens)"),
    MetricSpec("mean_thinking_length", "none", "Thinking (tokens)"),
    MetricSpec("reflections_per_response", "none", "Reflections / answer"),
    MetricSpec("reflection_rate", "none", "Reflection rate", _NO_TOKENS),
    # where a run set benchmark.analysis: the rate by phase of CyclicReflex's wave and inside the window,
    # counted and expected (the sampler's probability of a reflection token)
    MetricSpec("reflection_rate_peak_quarter", "none", "+A quarter", _NO_TOKENS),
    MetricSpec("reflection_rate_negative_half", "none", "-A half", _NO_TOKENS),
    MetricSpec("reflection_rate_in_window", "none", "In window", _NO_TOKENS),
    MetricSpec("reflection_prob_peak_quarter", "none", "+A quarter exp.", _NO_TOKENS),
    MetricSpec("reflection_prob_negative_half", "none", "-A half exp.", _NO_TOKENS),
    MetricSpec("reflection_prob_in_window", "none", "In window exp.", _NO_TOKENS),
    # reasoning utility next to an unlearning benchmark (WMDP's benchmark.reasoning.utility): <suite>_<metric>
    *(spec for name, label in _SUITES.items() for spec in _utility_specs(name, label)),
    # a distillation job's student (runner/distill/job.py): what its training cost, and how much of
    # the traces' response tokens the condensation kept
    MetricSpec("train_tokens", "none", "Training tokens"),
    MetricSpec("train_seconds", "down", "Training time (s)"),
    MetricSpec("kept_token_fraction", "none", "Response tokens kept"),
    # a diffusion attack job (runner/diffusion/job.py): its rows are no attack / attacked / defended, so
    # whether a high attack success rate is good depends on the row (the attacker's or the defender's view)
    MetricSpec("asr", "none", "Attack success rate"),
    MetricSpec("denoising_loss", "none", "Denoising loss (concept)"),
    MetricSpec("clip_score", "up", "CLIP score"),
    MetricSpec("fid", "down", "FID"),
    # loss on named text sets (runner/benchmarks/text_loss.py, task arithmetic): the negated text's loss
    # should rise, text about the same subject may follow it, unrelated text should stay where it was
    MetricSpec("forget_nll", "up", "Forget text NLL"),
    MetricSpec("aligned_nll", "none", "Aligned text NLL"),
    MetricSpec("irrelevant_nll", "down", "Irrelevant text NLL"),
    MetricSpec("forget_ppl", "up", "Forget text PPL"),
    MetricSpec("aligned_ppl", "none", "Aligned text PPL"),
    MetricSpec("irrelevant_ppl", "down", "Irrelevant text PPL"),
    # numbers a record holds outside `metrics`, named by their dotted key
    MetricSpec("attack.task_before", "up", "Attack task before"),  # the attack's own task (GSM8K, SST-2 ...)
    MetricSpec("attack.task_after", "up", "Attack task after"),
    MetricSpec("coreset.unlearn_steps", "none", "Unlearn steps"),
    MetricSpec("diffusion.attack.training.max_abs_cosine", "zero", "Max |cos| between attack tokens"),
    MetricSpec("diffusion.attack.training.seconds_per_step", "down", "Attack step (s)"),
    # RMU / R²MU with method.traces: the held-out reasoning traces' hidden states against the random target c*u,
    # after unlearning (lower: the traces are scrambled too) and its drop from before (runner/methods/rmu.py)
    MetricSpec("training.unlearn.trace_mse.end", "down", "Held-out trace MSE"),
    MetricSpec("training.unlearn.trace_mse.relative_drop", "up", "Trace MSE drop"),
    # denoising-loss gains over random tokens (runner/diffusion/job.py): how far the attack lowers the concept
    # loss, plainly and through the defence; the attacker wants the first large, the defender the others small
    MetricSpec("diffusion.loss_gain.attack_vs_random", "none", "Attack gain over random"),
    MetricSpec("diffusion.loss_gain.attack_vs_random_defended", "none", "Attack gain, defended"),
    MetricSpec("diffusion.loss_gain.adaptive_vs_random_defended", "none", "Adaptive gain, defended"),
)


def spec(name: str) -> MetricSpec | None:
    """The declared spec of a metric or dotted key; None for a number nobody declared."""
    return METRICS.get(name)


def null_reason(name: str) -> str:
    """Why metric ``name`` may be null ("" when it must be a number); a prefixed name (``math500_reflection_rate``,
    as a benchmark with several suites reports it) is looked up by its longest declared suffix."""
    parts = name.split("_")
    for i in range(len(parts)):
        found = METRICS.get("_".join(parts[i:]))
        if found is not None:
            return found.when_null
    return ""


def arrow(name: str) -> str:
    found = METRICS.get(name)
    return found.arrow if found else ""


CHOICE_LABELS = {
    # methods
    "ga": "GA",
    "graddiff": "GradDiff",
    "npo": "NPO",
    "simnpo": "SimNPO",
    "idkdpo": "IdkDPO",
    "dpo": "DPO",
    "altpo": "AltPO",
    "ceu": "CE-U",
    "satimp": "SatImp",
    "pdu": "PDU",
    "wga": "WGA",
    "undial": "UNDIAL",
    "rmu": "RMU",
    "task_vector": "Task Vector",
    "text_loss": "Text loss",
    "blur": "BLUR",
    "ilu": "ILU",
    "r2mu": "R²MU",
    # decodings
    "greedy": "Greedy",
    "sample": "Sampling",
    "cyclicreflex": "CyclicReflex",
    "tip": "TIP",
    "s1": "s1",
    # reasoning benchmarks
    "math500": "MATH-500",
    "gsm8k": "GSM8K",
    "aime24": "AIME24",
    # diffusion attacks and models (task=diffusion_attack)
    "subspace": "Subspace",
    "unlearndiffatk": "UnlearnDiffAtk",
    "advunlearn": "AdvUnlearn",
    "sd14": "SD v1.4",
    "aime25": "AIME25",
    "amc23": "AMC23",
    # condensations (task=distill; its baselines none / random / head / tail keep their option names,
    # which other groups share)
    "epic": "EPiC",
}
