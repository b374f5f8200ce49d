"""Download a benchmark's data from the hub into the local layout the runner reads offline.

For clusters whose compute nodes have no internet: run this on a login node,
then point the benchmark at the directory (``benchmark.source=DIR``, and for
WMDP's WikiText ``benchmark.wikitext.source=DIR``, for MMLU
``benchmark.mmlu.source=DIR``). Each split becomes
``DIR/<hub repo id>/<config>/<split>.parquet``, schema-checked on the way.

    python scripts/fetch_data.py wmdp --out /data/hub                 # questions, corpora, WikiText
    python scripts/fetch_data.py wmdp --bio-forget --out /data/hub    # + the gated bio forget corpus
    python scripts/fetch_data.py muse --corpus news --out /data/hub   # news | books | all
    python scripts/fetch_data.py mmlu --out /data/hub [--subjects college_biology virology]
    python scripts/fetch_data.py reasoning --out /data/hub            # MATH-500, GSM8K, AIME 24/25, AMC 23

The WMDP bio forget corpus is gated: request access with the form on
https://huggingface.co/datasets/cais/wmdp-bio-forget-corpus and run
``huggingface-cli login`` first. It must not be redistributed: keep the file
out of shared storage others can read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.benchmarks import muse, wmdp  # noqa: E402
from runner.data import hub, mmlu, wikitext  # noqa: E402

MUSE_GROWING = ("forget_1", "forget_2", "forget_3", "forget_4")  # News' scal / sust splits


def splits_for(benchmark: str, corpus: str = "all", subjects=None) -> list[tuple[hub.Split, dict]]:
    """Every (split, schema) a benchmark reads from the hub."""
    if benchmark == "wmdp":
        out = [(s, hub.MCQ) for s in wmdp.QUESTIONS.values()]
        out += [(s, hub.TEXT) for s in wmdp.CORPORA.values()]
        return out + [(wikitext.HUB_SPLIT, hub.TEXT)]
    if benchmark == "muse":
        out = []
        for name in ("news", "books") if corpus == "all" else (corpus,):
            out += muse.hub_splits(name)
            if name == "news":
                out += [(hub.Split(muse.REPOS[name], c, s), hub.TEXT) for c in ("scal", "sust") for s in MUSE_GROWING]
        return out
    if benchmark == "mmlu":
        names = mmlu.resolve_subjects(subjects or "all", "hub", "--subjects")
        return [(hub.Split(mmlu.HUB_ID, s, "test"), hub.MCQ) for s in names]
    if benchmark == "wikitext":
        return [(wikitext.HUB_SPLIT, hub.TEXT)]
    if benchmark == "reasoning":  # the splits each conf/benchmark/<name>.yaml names, with its columns
        from omegaconf import OmegaConf

        from runner.data import reasoning

        out = []
        for name in ("math500", "gsm8k", "aime24", "aime25", "amc23"):
            data = OmegaConf.load(ROOT / "conf" / "benchmark" / f"{name}.yaml").data
            schema = {str(data.question): hub.STRING, str(data.answer): reasoning.is_answer}
            out += [(split, schema) for split in reasoning.splits(data)]
        return out
    raise SystemExit(f"unknown benchmark {benchmark!r}: use wmdp, muse, mmlu, wikitext or reasoning")


def write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(path)  # a split is either complete or absent


def fetch(splits: list[tuple[hub.Split, dict]], out: Path, source: str = "hub", overwrite: bool = False) -> list[Path]:
    """Copy each split from ``source`` (the hub, or another local layout) to ``out``; returns the files written."""
    written = []
    for split, schema in splits:
        target = out / split.repo / split.config / f"{split.split}.parquet"
        if target.is_file() and not overwrite:
            print(f"have   {target}")
            continue
        rows = hub.load_split(source, split, schema, key="--source")
        write_parquet(rows, target)
        written.append(target)
        print(f"wrote  {target} ({len(rows)} rows)")
    return written


def fetch_bio_forget(out: Path) -> Path:
    from datasets import load_dataset

    target = out / wmdp.BIO_FORGET_HUB / "train.parquet"
    try:
        rows = load_dataset(wmdp.BIO_FORGET_HUB, split="train").to_list()
    except Exception as exc:  # gated: no access / not logged in, or no network
        raise SystemExit(
            f"could not download {wmdp.BIO_FORGET_HUB} ({type(exc).__name__}: {exc}).\nIt is gated: request access "
            f"with the form on https://huggingface.co/datasets/{wmdp.BIO_FORGET_HUB}, then `huggingface-cli login`."
        ) from exc
    hub.check_schema(rows, hub.TEXT, wmdp.BIO_FORGET_HUB, "--bio-forget")
    write_parquet(rows, target)
    print(f"wrote  {target} ({len(rows)} rows); run with benchmark.bio_forget_corpus={target}")
    return target


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("benchmark", choices=["wmdp", "muse", "mmlu", "wikitext", "reasoning"])
    ap.add_argument("--out", required=True, type=Path, help="directory to fill (<repo id>/<config>/<split>.parquet)")
    ap.add_argument("--corpus", default="all", choices=["news", "books", "all"], help="MUSE corpus")
    ap.add_argument("--subjects", nargs="*", help="MMLU subjects (default: all 57)")
    ap.add_argument("--bio-forget", action="store_true", help="WMDP: also the gated bio forget corpus")
    ap.add_argument("--source", default="hub", help="where to read from: hub (default) or another local layout")
    ap.add_argument("--overwrite", action="store_true", help="download splits already present again")
    args = ap.parse_args(argv)
    fetch(splits_for(args.benchmark, args.corpus, args.subjects), args.out, args.source, args.overwrite)
    if args.bio_forget:
        fetch_bio_forget(args.out)
    print(f"done: set the benchmark's source to {args.out.resolve()}")


if __name__ == "__main__":
    main()
