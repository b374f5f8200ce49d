"""A benchmark's fine-tuned models (``Benchmark.finetuned_models``), built once and cached content-addressed.

TOFU: target = base fine-tuned on forget + retain; retain = base fine-tuned on
the retain rows only (MUSE's offline setting does the same with text). A cache entry holds just the trainable parameters (the rest
is the base model's) and the evaluation of that model, keyed by everything
that produced it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from runner import distributed
from runner.cache import CacheEntry, content_key, write_json_atomic
from runner.cache_schema import EVALUATION, meta_check, read_checked, set_aside_file
from runner.distributed import Strategy
from runner.errors import environment_errno
from runner.models import load_state, save_trainable
from runner.scoring import mean_nll
from runner.training import ListDataset, collate_single, train

log = logging.getLogger(__name__)
STATE_FILE = "trainable.safetensors"


class FinetunedModel:
    """One model fine-tuned from the loaded one (TOFU's ``target`` or ``retain``), in the cache.

    ``finetune_cfg`` is the benchmark's trainer settings (``benchmark.finetune``), ``trainable_layers``
    the model's (``model.trainable_layers``); with the rows, the encoding and the precision they are
    the entry's key.
    """

    def __init__(
        self,
        kind: str,
        rows: list[dict],
        identity: dict,
        encoding: dict,
        *,
        benchmark: str,
        finetune_cfg,
        trainable_layers,
        precision: str,
        cache_dir: Path,
    ):
        self.kind, self.rows = kind, rows
        self.finetune_cfg, self.precision = finetune_cfg, precision
        key = content_key(
            {
                "kind": kind,
                "model": identity,
                "trainable_layers": trainable_layers,
                "rows": content_key(rows),
                "encoding": encoding,  # prompt format and max length: what the rows become as tokens
                # N ranks x batch b share the entry of one process x batch N*b (same model within tolerance)
                "finetune": distributed.single_process_equivalent(finetune_cfg),
                "precision": precision,
            }
        )
        self.entry = CacheEntry(
            cache_dir,
            "finetuned",
            key,
            f"{benchmark.upper()} {kind} model",
            check=meta_check({"kind": kind, "rows": len(rows)}),  # an entry of other rows, checksums and all
        )
        self.state_path = self.entry.path / STATE_FILE

    def build(
        self,
        model: torch.nn.Module,
        base_state: dict,
        encode,
        pad_id: int,
        run_dir: Path,
        callbacks: list | None = None,
        strategy: Strategy | None = None,
    ) -> dict:
        """Fine-tune from the base weights (the caller saw no complete cache entry); returns training stats."""
        try:
            stats = self._train(model, base_state, encode, pad_id, run_dir, callbacks, strategy)
        except BaseException:
            self.entry.abandon()  # the lock taken by ready(): another job may build it now
            raise
        if distributed.is_main_process():  # every rank trained; rank 0 writes the cache
            try:
                out = self.entry.start()
                save_trainable(model, out / STATE_FILE)
                self.entry.finish({"kind": self.kind, "rows": len(self.rows), "training": stats})
            except BaseException as exc:
                self.entry.abandon()
                code = environment_errno(exc) if isinstance(exc, Exception) else None
                if code is not None:  # safetensors reports a full disk without the file: name the entry
                    raise OSError(code, os.strerror(code), str(self.entry.path)) from exc
                raise
        distributed.barrier()  # the other ranks may read the entry next
        return stats

    def _train(self, model, base_state, encode, pad_id: int, run_dir: Path, callbacks, strategy) -> dict:
        load_state(model, base_state)
        ft = self.finetune_cfg
        return train(
            model,
            ListDataset(encode(self.rows)),
            collate_single(pad_id),
            lambda m, batch: (mean_nll(m, batch), {}),
            ft,
            seed=ft.seed,
            precision=self.precision,
            output_dir=run_dir / f"finetune_{self.kind}",
            stage=f"fine-tune {self.kind} model",
            callbacks=callbacks,
            strategy=strategy,
        )

    def load_into(self, model: torch.nn.Module) -> None:
        load_state(model, self.state_path)

    def evaluation(self, eval_key: str, compute, check=None) -> dict:
        """The cached evaluation of this model for ``eval_key`` (trusted when ``check`` finds nothing in it),
        computed by ``compute()`` when missing or damaged."""
        return cached_json(self.entry.path / f"eval-{eval_key}.json", compute, f"the {self.kind} model", check)


def cached_json(path: Path, compute, what: str, check=None) -> dict:
    """``compute()``'s result, stored at ``path`` (atomically) the first time and read back after.

    A stored file is trusted only when it fits the evaluation schema and ``check(value)`` (what the record
    would take from it, ``runner/cache_schema.py``) finds nothing; otherwise it is logged, moved aside and
    computed again. A cache that cannot be written (read-only, full) only costs the reuse.
    """
    if path.exists():
        stored, problem = read_checked(path, EVALUATION, check)
        if problem is None:
            log.info("cache hit: evaluation of %s (%s)", what, path)
            return stored
        set_aside_file(path, f"the evaluation of {what}", problem)
    result = compute()
    try:
        write_json_atomic(path, result)
    except OSError as exc:
        log.warning("could not store the evaluation of %s in the cache (%s): %s", what, exc.strerror or exc, path)
    return result
