"""Text-classification data sets of the ILU paper's fine-tuning attacks: SST-2, MRPC (GLUE) and AG News.

Each is read through ``runner.data.hub`` (the hub, or a local directory laid
out ``<dir>/<hub repo id>/<config>/<split>.parquet|jsonl``) with its hub
schema checked, then turned into QA rows: the question holds the example and
the instruction, the answer is the label's word. Accuracy is read by label
scoring (the label word with the highest log-probability after the prompt).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runner.data.hub import INTEGER, STRING, Schema, Split, load_split
from runner.errors import ConfigError


@dataclass(frozen=True)
class ClassificationTask:
    schema: Schema
    labels: tuple[str, ...]  # the answer word of label id i
    prompt: Callable[[dict], str]


TASKS: dict[str, ClassificationTask] = {
    # nyu-mll/glue, config sst2: sentence, label (0 negative, 1 positive), idx
    "sst2": ClassificationTask(
        schema={"sentence": STRING, "label": INTEGER, "idx": INTEGER},
        labels=("negative", "positive"),
        prompt=lambda r: f"Is the sentiment of this sentence positive or negative?\nSentence: {r['sentence']}",
    ),
    # nyu-mll/glue, config mrpc: sentence1, sentence2, label (0 not equivalent, 1 equivalent), idx
    "mrpc": ClassificationTask(
        schema={"sentence1": STRING, "sentence2": STRING, "label": INTEGER, "idx": INTEGER},
        labels=("no", "yes"),
        prompt=lambda r: (
            "Do these two sentences mean the same thing? Answer yes or no.\n"
            f"Sentence 1: {r['sentence1']}\nSentence 2: {r['sentence2']}"
        ),
    ),
    # fancyzhx/ag_news: text, label (0 World, 1 Sports, 2 Business, 3 Sci/Tech)
    "agnews": ClassificationTask(
        schema={"text": STRING, "label": INTEGER},
        labels=("world", "sports", "business", "technology"),
        prompt=lambda r: f"What is the topic of this news article: world, sports, business or technology?\n{r['text']}",
    ),
}


def load_task_rows(task: str, source: str, repo: str, config: str, split: str, key: str) -> list[dict]:
    """QA rows ``{"question", "answer", "label"}`` of one split, schema and labels checked."""
    spec = TASKS.get(task)
    if spec is None:
        raise ConfigError(f"{key.rsplit('.', 1)[0]}.task", f"unknown task `{task}`", f"use one of {sorted(TASKS)}")
    where = Split(repo, config, split)
    rows = load_split(source, where, spec.schema, key)
    out = []
    for i, r in enumerate(rows):
        if not 0 <= r["label"] < len(spec.labels):
            raise ConfigError(
                key,
                f"{where} row {i} has label {r['label']}, not one of 0..{len(spec.labels) - 1} "
                "(GLUE test splits hide their labels as -1)",
                "use a labelled split (train, validation) for the attack",
            )
        out.append({"question": spec.prompt(r), "answer": spec.labels[r["label"]], "label": r["label"]})
    return out
