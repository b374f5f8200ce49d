"""Unlearning trace detection (``analysis=trace``, arXiv 2506.14003): can one tell an unlearned model from
the original by what it says, or by its activations?

Models (``analysis.models``, two or more): finished runs' directories (their saved weights,
``runner.saved_model.load_run_model``), ``base`` (the runs' base model) and ``start`` (the model the first
run's unlearning started from: TOFU's fine-tuned target; the base where there is none). Each model answers
each prompt set (``runner.analysis.prompts``) greedily with a repetition penalty; the responses are cached
(``runner.analysis.responses``). Then, for every pair of models and every prompt set:

- **text**: a classifier of the response text alone, which model wrote it. ``classifier.train: frozen``
  (the offline default): the encoder's last hidden state mean-pooled over the response, then a logistic
  regression (scikit-learn, standardised features); ``finetune``: encoder + mean pooling + linear head
  trained end to end with the paper's schedule (``runner.analysis.text_classifier``). The encoder is
  ``base`` (the runs' base model, offline) or a hub id (``bert-base-uncased``, ``gpt2``, ...). ``mixed``: one
  classifier over all sets together, its accuracy also reported per set.
- **activations**: each model's hidden states on prompt + the first model's response (``probes.inputs:
  shared``, the default: the same tokens for every model, so only the weights differ) or on prompt + its
  own response (``own``, the paper's view: what the model computes as it answers, which a probe can
  partly read off the text itself, even at the embeddings) (``runner.analysis.hidden``),
  a logistic-regression probe per layer on the last token and on the mean over the response, and an MLP
  probe (1024-256-128) on the final normalised hidden state of the last token.

Splits are by question with every model's response to a question on the same side, accuracy is out of
fold with a Wilson 95% interval (``runner.analysis.detect``). results.json: a ``metrics`` row per pair,
the detail under ``trace``; plots ``trace_probes.png`` (accuracy by layer) and ``trace_pca.png`` (2-D PCA
of the activations at ``probes.plot_layers``; ``trace_umap.png`` too where ``umap`` is installed); every
response in ``trace_responses.jsonl``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from itertools import combinations
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from runner import distributed
from runner.analysis import detect, hidden, prompts, responses, text_classifier
from runner.analysis.base import Analysis
from runner.cache import file_digest, safetensors_problem
from runner.data.qa import PromptFormat
from runner.errors import ConfigError
from runner.models import load_model, load_state, model_identity
from runner.options import SEED, Range
from runner.saved_model import DIRECTORY, STATE_FILE, load_run_model, read_run_json, saved_weights
from runner.training import TRAIN_RANGES

log = logging.getLogger(__name__)
SPECIAL = ("base", "start")
TRAIN_CHOICES = ("frozen", "finetune")


def _node(value) -> dict:
    if value is None:
        return {}
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else dict(value)


class TraceDetection(Analysis):
    name = "trace"
    option_ranges = {
        # how many prompts of each set; `seed` draws the folds and the probes' initialisation
        "prompts.tofu.n": Range(low=1, whole=True, optional=True, example="40 (null: all)"),
        "seed": SEED,
        "prompts.wmdp.n": Range(low=1, whole=True, optional=True, example="100"),
        "prompts.mmlu.per_subject": Range(low=1, whole=True, example="20"),
        "prompts.ultrachat.n": Range(low=1, whole=True, example="200"),
        # the two models' responses
        "generation.max_new_tokens": Range(low=1, whole=True, example="96"),
        "generation.repetition_penalty": Range(low=0, low_open=True, example="1.1 (the paper's)"),
        "generation.batch_size": Range(low=1, whole=True, example="32"),
        # the classifiers' train / test split and training
        "split.folds": Range(low=1, whole=True, example="5 (>= 2: cross-validation; 1: one split)"),
        "split.test_fraction": Range(low=0, high=1, low_open=True, high_open=True, example="0.3"),
        "classifier.max_length": Range(low=1, whole=True, example="512"),
        "classifier.batch_size": Range(low=1, whole=True, example="8 (the paper's)"),
        "classifier.epochs": Range(low=1, whole=True, example="3 (the paper's)"),
        **{
            f"classifier.{k}": TRAIN_RANGES[k]
            for k in ("learning_rate", "warmup_ratio", "weight_decay", "max_grad_norm")
        },
        "probes.batch_size": Range(low=1, whole=True, example="8"),
    }

    def __init__(self, models=(), prompts=None, generation=None, split=None, classifier=None, probes=None, seed=0):
        self.entries = [str(m) for m in (models or [])]
        self.prompts_cfg = OmegaConf.create(_node(prompts))
        self.generation = {"max_new_tokens": 96, "repetition_penalty": 1.1, "batch_size": 32} | _node(generation)
        self.split = {"folds": 5, "test_fraction": 0.3} | _node(split)
        self.classifier = OmegaConf.create(
            {
                "encoder": "base",
                "train": "frozen",
                "mixed": True,
                "batch_size": 8,
                "max_length": 512,
                "learning_rate": 9e-5,
                "epochs": 3,
                "warmup_ratio": 0.1,
                "weight_decay": 0.001,
                "max_grad_norm": 0.3,
            }
            | _node(classifier)
        )
        self.probes = {
            "enabled": True,
            "inputs": "shared",
            "batch_size": 8,
            "plot_layers": None,
            "mlp": [1024, 256, 128],
        }
        self.probes |= _node(probes)
        self.seed = int(seed)
        self._check_values()

    def _check_values(self) -> None:
        if len(self.entries) < 2 or len(set(self.entries)) != len(self.entries):
            raise ConfigError(
                "analysis.models",
                f"{self.entries} is not two or more different models",
                "e.g. analysis.models=[base,RUN] or [start,RUN] or [RUN_A,RUN_B]",
            )
        if all(e in SPECIAL for e in self.entries):
            raise ConfigError("analysis.models", "no run directory is named", "name at least one run, e.g. [base,RUN]")
        if self.probes["inputs"] not in ("own", "shared"):
            raise ConfigError("analysis.probes.inputs", f"`{self.probes['inputs']}`", "own or shared")
        if self.classifier.train not in TRAIN_CHOICES:
            raise ConfigError("analysis.classifier.train", f"`{self.classifier.train}`", f"one of {TRAIN_CHOICES}")

    # --- inputs: checked before any model loads -------------------------------------------------------

    def check(self) -> None:
        self.runs = {}
        for e in self.entries:
            if e in SPECIAL:
                continue
            self.runs[e] = saved_weights(Path(e).expanduser().resolve(), "analysis.models")
        first_run, first = next(iter(self.runs.values()))
        self.base_cfg = OmegaConf.create(first["base"]["config"])
        for e, (_, info) in self.runs.items():
            if info["base"]["identity"] != first["base"]["identity"]:
                raise ConfigError("analysis.models", f"{e} has another base model than {first_run}", "one base model")
        try:
            now = model_identity(self.base_cfg)
        except (OSError, ConfigError) as exc:
            raise ConfigError(
                "analysis.models", f"the runs' base model is not available ({exc})", "install it"
            ) from exc
        if now != first["base"]["identity"]:
            raise ConfigError(
                "analysis.models", "the base model has changed since the runs", "analyse runs of this base"
            )
        self.base_identity = now
        self.start = first.get("start")
        if "start" in self.entries and self.start is not None and not Path(self.start).is_file():
            raise ConfigError(
                "analysis.models", f"the start model {self.start} is no longer in the cache", "rerun the run"
            )
        if "start" in self.entries and self.start is not None and (problem := safetensors_problem(Path(self.start))):
            raise ConfigError(
                "analysis.models", f"the start model {self.start} is damaged ({problem})", "rerun the run"
            )
        results = first_run / "results.json"
        config = read_run_json(results, "analysis.models").get("config", {}) if results.is_file() else {}
        self.precision = config.get("precision", "fp32")
        if self.precision not in ("fp32", "bf16"):
            self.precision = "fp32"
        self.sets = prompts.load_sets(self.prompts_cfg)
        questions = {name: len(rows) for name, rows in self.sets.items()}
        detect.check_split(questions, int(self.split["folds"]), float(self.split["test_fraction"]))
        encoder = str(self.classifier.encoder)
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        if encoder != "base" and offline and not Path(encoder).expanduser().is_dir():
            raise ConfigError(
                "analysis.classifier.encoder",
                f"`{encoder}` is a hub model and the hub is switched off (HF_HUB_OFFLINE)",
                "use encoder=base (the runs' base model), or a local directory",
            )

    def labels(self) -> list[str]:
        out = []
        for e in self.entries:
            name = e if e in SPECIAL else Path(e).name
            out.append(name if name not in out else f"{name}#{len(out)}")
        return out

    def _identity(self, entry: str) -> dict:
        """What the responses' cache key holds for a model: the base, and the weights laid over it."""
        if entry == "base":
            return {"base": self.base_identity}
        if entry == "start":
            return {"base": self.base_identity, "start": file_digest(Path(self.start)) if self.start else None}
        run, info = self.runs[entry]
        if info["save_model"] == "trainable":
            return {"base": self.base_identity, "weights": file_digest(run / DIRECTORY / STATE_FILE)}
        files = sorted(p for p in (run / DIRECTORY).iterdir() if p.suffix == ".safetensors")
        return {"base": self.base_identity, "weights": [file_digest(p) for p in files]}

    def _load(self, entry: str, cache_dir: Path):
        if entry in SPECIAL:
            model, tokenizer = load_model(self.base_cfg, cache_dir)
            if entry == "start" and self.start:
                load_state(model, Path(self.start))
            return model, tokenizer
        return load_run_model(self.runs[entry][0], cache_dir)

    # --- the analysis --------------------------------------------------------------------------------

    def run(self, record, run_dir: Path, cache_dir: Path) -> None:
        labels, device = self.labels(), distributed.device()
        fmt = PromptFormat.from_cfg(self.base_cfg.prompt)
        said, acts, generation = {}, {}, {}
        with record.stage("generate"):  # one model in memory at a time
            for entry, label in zip(self.entries, labels, strict=True):
                model, tokenizer = self._load(entry, cache_dir)
                model.to(device).eval()
                identity = self._identity(entry)
                for name, rows in self.sets.items():
                    ids = responses.prompt_ids(tokenizer, fmt, rows)
                    out, stats = responses.responses(
                        model, tokenizer, ids, self.generation, self.precision, cache_dir, identity, f"{label} {name}"
                    )
                    said[label, name], generation[f"{label} / {name}"] = out, stats
                    if self.probes["enabled"]:
                        # own: each model reads its own response; shared: every model reads the first model's
                        shown = out if self.probes["inputs"] == "own" else said[labels[0], name]
                        pairs = [(p, r["ids"]) for p, r in zip(ids, shown, strict=True)]
                        acts[label, name] = hidden.activations(
                            model, pairs, tokenizer.pad_token_id, int(self.probes["batch_size"]), self.precision,
                            f"activations {label} {name}",
                        )  # fmt: skip
                del model
                gc.collect()
        _write_responses(run_dir / "trace_responses.jsonl", said, self.sets)
        with record.stage("text_classifier"):
            text = self._text(said, labels, cache_dir, device)
        probes = {}
        if self.probes["enabled"]:
            with record.stage("probes"):
                probes = self._probes(acts, labels)
        plots = {}
        if self.probes["enabled"]:
            from runner.analysis import plots as trace_plots

            plots = trace_plots.write_all(run_dir, probes, acts, labels, list(self.sets), self.probes["plot_layers"])
        rows = {}
        for pair in text:
            row = {f"text_{s}": v["accuracy"] for s, v in text[pair].items() if "accuracy" in v}
            for s, v in probes.get(pair, {}).items():
                row[f"probe_{s}"] = v["best"]["accuracy"]
                row[f"mlp_{s}"] = v["mlp"]["accuracy"]
            rows[pair] = row
        record.data["metrics"] = rows
        record.data[self.name] = {
            "models": {lab: e for lab, e in zip(labels, self.entries, strict=True)},
            "prompt_sets": {
                name: {"relevance": prompts.RELEVANCE[name], "questions": len(rows_)}
                for name, rows_ in self.sets.items()
            },
            "generation": {"settings": self.generation, "precision": self.precision, "runs": generation},
            "mean_response_tokens": {
                f"{lab} / {s}": float(np.mean([len(r["ids"]) for r in said[lab, s]])) for lab, s in said
            },
            "split": self.split,
            "classifier": OmegaConf.to_container(self.classifier),
            "probe_settings": self.probes,
            "text": text,
            "probes": probes,
            "plots": plots,
            "responses": str(run_dir / "trace_responses.jsonl"),
        }

    def _folds(self, groups) -> list:
        return detect.splits(groups, int(self.split["folds"]), self.seed, float(self.split["test_fraction"]))

    @staticmethod
    def _pair_data(values: dict, a: str, b: str, sets: list[str], id_sets: dict):
        """(stacked values, labels 0 for a / 1 for b, question groups, set of each example) over ``sets``."""
        xs, y, groups, where = [], [], [], []
        for label_value, model in enumerate((a, b)):
            for s in sets:
                xs.append(values[model, s])
                n = len(id_sets[s])
                y += [label_value] * n
                groups += [p["id"] for p in id_sets[s]]
                where += [s] * n
        return xs, np.asarray(y), np.asarray(groups), np.asarray(where)

    def _text(self, said: dict, labels: list[str], cache_dir: Path, device) -> dict:
        texts = {k: [r["text"] for r in v] for k, v in said.items()}
        encoder = str(self.classifier.encoder)
        frozen = self.classifier.train == "frozen"
        if frozen:  # features once per (model, set); the classifier is a logistic regression on them
            enc, tok = (
                load_model(self.base_cfg, cache_dir) if encoder == "base" else text_classifier.load_hub_encoder(encoder)
            )
            enc.to(device).eval()
            feats = {
                k: hidden.mean_pooled(
                    enc,
                    tok,
                    v,
                    int(self.classifier.batch_size),
                    self.precision,
                    int(self.classifier.max_length),
                    f"encode {k[0]} {k[1]}",
                )  # fmt: skip
                for k, v in texts.items()
            }
            del enc
            gc.collect()

        def load_encoder():
            if encoder == "base":
                return load_model(self.base_cfg, cache_dir)
            return text_classifier.load_hub_encoder(encoder)

        groupings = {s: [s] for s in self.sets}
        if self.classifier.mixed and len(self.sets) > 1:
            groupings["mixed"] = list(self.sets)
        out = {}
        for a, b in combinations(labels, 2):
            pair = f"{a} vs {b}"
            out[pair] = {}
            for name, sets in groupings.items():
                if frozen:
                    xs, y, groups, where = self._pair_data(feats, a, b, sets, self.sets)
                    x = np.concatenate(xs)
                    fit = detect.sklearn_fit_predict(lambda: detect.linear_probe(self.seed), x, y)
                else:
                    xs, y, groups, where = self._pair_data(texts, a, b, sets, self.sets)
                    flat = [t for chunk in xs for t in chunk]

                    def fit(train, test, flat=flat, y=y, pair=pair, name=name):
                        return text_classifier.fit_predict(
                            load_encoder, flat, y, train, test, self.classifier, device, self.seed, f"{pair} {name}"
                        )

                pred = detect.out_of_fold(fit, self._folds(groups), len(y))
                result = detect.summary(y, pred, groups) | {"labels": [a, b]}
                if name == "mixed":
                    result["by_set"] = {
                        s: detect.summary(y[where == s], pred[where == s], groups[where == s]) for s in sets
                    }
                out[pair][name] = result
                log.info("trace text %s / %s: %.3f %s", pair, name, result["accuracy"], result["ci95"])
        return out

    def _probes(self, acts: dict, labels: list[str]) -> dict:
        hidden_sizes = tuple(int(h) for h in self.probes["mlp"])
        out = {}
        for a, b in combinations(labels, 2):
            pair = f"{a} vs {b}"
            out[pair] = {}
            for s in self.sets:
                lasts, y, groups, _ = self._pair_data({k: v[0] for k, v in acts.items()}, a, b, [s], self.sets)
                means, *_ = self._pair_data({k: v[1] for k, v in acts.items()}, a, b, [s], self.sets)
                last, mean = np.concatenate(lasts), np.concatenate(means)
                folds = self._folds(groups)
                by_layer = {
                    "last_token": detect.probe_by_layer(last, y, groups, folds, self.seed),
                    "response_mean": detect.probe_by_layer(mean, y, groups, folds, self.seed),
                }
                final = last[:, -1, :]  # the final normalised hidden state, last token
                mlp = detect.out_of_fold(
                    detect.sklearn_fit_predict(lambda: detect.mlp_probe(hidden_sizes, self.seed), final, y),
                    folds,
                    len(y),
                )
                best_pool, best_layer = max(
                    ((p, i) for p, curve in by_layer.items() for i in range(len(curve))),
                    key=lambda pi: by_layer[pi[0]][pi[1]]["accuracy"],
                )
                out[pair][s] = {
                    "labels": [a, b],
                    "accuracy_by_layer": {p: [c["accuracy"] for c in curve] for p, curve in by_layer.items()},
                    "ci95_by_layer": {p: [c["ci95"] for c in curve] for p, curve in by_layer.items()},
                    "n_test_questions": by_layer["last_token"][0]["n_test_questions"],
                    "n_test_responses": by_layer["last_token"][0]["n_test_responses"],
                    "best": {"pooling": best_pool, "layer": best_layer} | by_layer[best_pool][best_layer],
                    "final_layer": by_layer["last_token"][-1],
                    "mlp": detect.summary(y, mlp, groups) | {"hidden": list(hidden_sizes)},
                }
                log.info("trace probes %s / %s: best %s layer %d %.3f, mlp %.3f", pair, s, best_pool, best_layer,
                         out[pair][s]["best"]["accuracy"], out[pair][s]["mlp"]["accuracy"])  # fmt: skip
        return out


def _write_responses(path: Path, said: dict, sets: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for (label, name), rows in said.items():
            for prompt, r in zip(sets[name], rows, strict=True):
                f.write(json.dumps({"model": label, "set": name, "id": prompt["id"], "response": r["text"]}) + "\n")
