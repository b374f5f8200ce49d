"""The shipped MMLU questions through lm-eval-harness and through the runner, on one in-memory model.

Shared by tests/scripts/test_lmeval_mmlu.py (identical per-question predictions)
and scripts/bench.py (questions per second). lm-eval reads the shipped CSV
files itself through a local task definition written here: its own MMLU
task's prompt (description, ``doc_to_text``, choices " A".." D") on
``data/mmlu/test/<subject>_test.csv``, so no hub access is needed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MMLU_DIR = ROOT / "data" / "mmlu" / "test"

TASK_YAML = """\
task: {task}
dataset_path: csv
dataset_kwargs:
  data_files: {{test: "{csv}"}}
  column_names: [question, A, B, C, D, answer]
  na_filter: false
  cache_dir: "{cache}"
test_split: test
output_type: multiple_choice
description: "The following are multiple choice questions (with answers) about {topic}.\\n\\n"
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{A}}}}\\nB. {{{{B}}}}\\nC. {{{{C}}}}\\nD. {{{{D}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: "{{{{['A', 'B', 'C', 'D'].index(answer)}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def write_tasks(workdir: Path, subjects: list[str]) -> dict[str, str]:
    """One lm-eval task YAML per subject in ``workdir``; returns subject -> task name."""
    workdir.mkdir(parents=True, exist_ok=True)
    names = {}
    for subject in subjects:
        task = f"shipped_mmlu_{subject}"
        text = TASK_YAML.format(
            task=task,
            csv=MMLU_DIR / f"{subject}_test.csv",
            cache=workdir / "datasets-cache",  # not ~/.cache
            topic=subject.replace("_", " "),
        )
        (workdir / f"{task}.yaml").write_text(text)
        names[subject] = task
    return names


def lm_eval_scores(model, tokenizer, subjects, limit, batch_size, workdir: Path, precision="fp32") -> dict[str, dict]:
    """Per subject: lm-eval's contexts and (N, 4) log-likelihoods of " A".." D", in file order; and the seconds taken."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    names = write_tasks(workdir, subjects)
    # bf16: autocast over the model's weights, as the runner's precision=bf16 does
    mixed = "bfloat16" if precision == "bf16" else None
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, mixed_precision_dtype=mixed)
    manager = TaskManager(include_path=str(workdir), include_defaults=False)
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(
        model=lm, tasks=list(names.values()), task_manager=manager, limit=limit, log_samples=True, bootstrap_iters=0
    )
    seconds = time.perf_counter() - start
    result = {}
    for subject, task in names.items():
        samples = sorted(out["samples"][task], key=lambda s: s["doc_id"])
        result[subject] = {
            "contexts": [s["arguments"][0][0] for s in samples],
            "continuations": [[a[1] for a in s["arguments"]] for s in samples],
            "logprobs": np.array([[r[0] for r in s["filtered_resps"]] for s in samples], dtype=np.float64),
        }
    return {"subjects": result, "seconds": seconds}


def runner_scores(model, tokenizer, subjects, limit, batch_size, precision="fp32", padding="right") -> dict:
    """The same questions through runner.benchmarks.mcq (the path WMDP / MMLU evaluation takes)."""
    from runner.benchmarks import mcq
    from runner.data import mmlu

    start = time.perf_counter()
    rows, prompts = {}, {}
    for subject in subjects:
        rows[subject] = mmlu.load_subject(subject, "local")[:limit]
        prompts[subject] = [
            mcq.mcq_prompt(r["question"], r["choices"], mcq.subject_topic(subject)) for r in rows[subject]
        ]
    flat = [p for s in subjects for p in prompts[s]]
    encoded = [mcq.encode_mcq(tokenizer, p) for p in flat]
    logp = mcq.choice_logprobs(model, encoded, tokenizer.pad_token_id, batch_size, precision, "runner MMLU", padding)
    seconds = time.perf_counter() - start
    result, i = {}, 0
    for subject in subjects:
        n = len(prompts[subject])
        result[subject] = {
            "contexts": prompts[subject],
            "logprobs": logp[i : i + n],
            "answers": [r["answer"] for r in rows[subject]],
        }
        i += n
    return {"subjects": result, "seconds": seconds}
