"""Faults a hostile but honest user meets: bad config and data, signals, kills, corrupt and read-only caches,
full disks, concurrent jobs, planted secrets and broken report inputs. Real runs of the tiny model.

Every case caused by input or by the machine must end with one message naming the key or file and the
fix (``error: ...``, no traceback), an exit status that agrees with ``results.json``, and nothing lost:
a failed point still has its record, a corrupt cache entry is rebuilt, an edited data file is not
answered by a stale result. Cases whose console matters run ``python -m runner`` as a subprocess;
the others call ``job.run`` in this process, on the session's shared cache.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from runner import cache, job, report, rundir, training
from runner.errors import ConfigError, JobInterrupted, TrainingDiverged
from runner.output import secrets
from runner.output.preset import load_preset
from runner.output.report import write_report
from tests.conftest import ROOT, TINY, compose_cfg, random_llama

FAULTS_CONF = ROOT / "tests" / "fixtures" / "faults_conf"
HF_SECRET = "hf_PlantedFaultTokenAbCdEfGhIjKlMnOp98765"
WANDB_SECRET = "fedcba9876543210fedcba9876543210fedcba98"
CONFIG_SECRET = "PlantedFaultSecret-5544332211"
SHORT_SECRET = "Hunter2pass"


def _env(**extra) -> dict:
    # the worktree's runner first, whatever the working directory; one thread per process on a small machine
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return env | {"DS_ACCELERATOR": "cpu"} | extra


def _cmd(*overrides: str) -> list[str]:
    flags = [o for o in overrides if o.startswith("-")]  # -m (multirun) before the overrides
    return [sys.executable, "-m", "runner", *flags, *TINY, *[o for o in overrides if not o.startswith("-")]]


def _run(*overrides: str, env: dict | None = None, cwd: Path = ROOT, timeout: int = 300):
    return subprocess.run(_cmd(*overrides), cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=timeout)


# fewer steps and shorter greedy answers where the numbers do not matter, only what the job writes and says
QUICK = ("unlearn.max_steps=2", "benchmark.max_new_tokens={forget: 4, retain: 4, real_authors: 4, world_facts: 4}")


def _errors(stderr: str) -> list[str]:
    """The ``error:`` lines (progress bars may precede one on its line); no traceback allowed anywhere."""
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line[line.index("error: ") :] for line in stderr.splitlines() if "error: " in line]


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def _read(path: Path) -> dict | None:
    from runner.output.record import read_results

    return read_results(path)


def _wait_for_stage(run_dir: Path, stage: str, proc: subprocess.Popen, timeout: float = 240, after=None) -> dict:
    """The record once ``stage`` is done (in a record other than ``after``: an earlier job's in the same directory)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        record = _read(run_dir / "results.json")
        if record and stage in record.get("timings", {}) and record.get("started") != (after or {}).get("started"):
            return record
        assert proc.poll() is None, f"the job ended early ({proc.returncode})"
        time.sleep(0.2)
    raise AssertionError(f"no `{stage}` stage within {timeout}s")


@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    """A small file system of our own (tmpfs; needs root): full-disk and read-only cases."""
    path.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({out.stderr.decode().strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> dict:
    """A cache with just the tiny model and both TOFU reference models (and their evaluations), plus the
    completed record of that job. Its own cache, not the session's: the cases copy it onto small file
    systems, which the session cache outgrows as other test files add models to it."""
    run_dir, cache = tmp_path_factory.mktemp("warm"), tmp_path_factory.mktemp("warm-cache")
    cfg = compose_cfg(*TINY, f"paths.cache_dir={cache}", "seed=80")
    record = job.run(cfg, run_dir, choices={"method": "npo", "benchmark": "tofu", "model": "tiny"})
    assert record["status"] == "completed"
    return {"cache": cache, "record": run_dir / "results.json"}


def _copy_cache(src: Path, dst: Path, kinds=("models", "finetuned")) -> Path:
    for kind in kinds:
        shutil.copytree(src / kind, dst / kind, ignore=shutil.ignore_patterns(".*.lock", ".*.tmp-*", ".*.corrupt-*"))
    return dst


# ---- 1. concurrent jobs: one directory each; one build of a shared reference model ----------------------


def test_jobs_started_together_get_their_own_run_dirs_and_share_one_build(warm, tmp_path):
    cache_dir = _copy_cache(warm["cache"], tmp_path / "cache", kinds=("models",))  # no reference model yet
    procs = [
        subprocess.Popen(
            # the default run dir (outputs/runs/<date>/<time>-<id>); a short job around a real fine-tuning
            _cmd(f"paths.cache_dir={cache_dir}", f"seed={seed}", *QUICK, "benchmark.finetune.epochs=10"),
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (81, 82)
    ]
    outs = [p.communicate(timeout=400) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    records = sorted(tmp_path.glob("outputs/runs/*/*/results.json"))
    assert len(records) == 2 and records[0].parent != records[1].parent
    loaded = [json.loads(p.read_text()) for p in records]
    assert sorted(r["config"]["seed"] for r in loaded) == [81, 82]
    assert all(r["status"] == "completed" for r in loaded)
    # the reference models were fine-tuned once: the other job waited for them and loaded them
    for kind in ("finetune_target", "finetune_retain"):
        assert sum(kind in r["training"] for r in loaded) == 1, kind
    assert len(list((cache_dir / "finetuned").glob("*/COMPLETE"))) == 2


def test_two_configs_composed_in_the_same_instant_name_different_run_and_sweep_dirs():
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        a, b = (compose("config", overrides=list(TINY), return_hydra_config=True) for _ in range(2))
        names = [(str(c.hydra.run.dir), str(c.hydra.sweep.dir)) for c in (a, b)]  # resolved within milliseconds
    assert names[0][0] != names[1][0] and names[0][1] != names[1][1]
    assert str(a.hydra.run.dir) == names[0][0]  # one config reads one name, however often it is resolved


def test_a_run_directory_held_by_a_live_job_is_refused(tiny_cfg, tmp_path):
    with rundir.hold(tmp_path), pytest.raises(ConfigError, match="hydra.run.dir.*in use by another running job"):
        job.run(tiny_cfg("seed=83"), tmp_path)
    assert not (tmp_path / "results.json").exists()  # the other job's record is not touched


@pytest.mark.parametrize("status", ["completed", "failed", "running"])
def test_a_directory_holding_another_jobs_record_is_refused_and_left_as_is(tiny_cfg, tmp_path, status):
    other = {"status": status, "job_key": "0123456789abcdef", "config_key": "fedcba9876543210", "metrics": {}}
    (tmp_path / "results.json").write_text(json.dumps(other))
    with pytest.raises(ConfigError, match=r"hydra.run.dir.*holds the record of another job.*\+overwrite=true"):
        job.run(tiny_cfg("seed=83"), tmp_path)
    assert json.loads((tmp_path / "results.json").read_text()) == other and not (tmp_path / ".hydra").exists()
    # a config that fails its checks there does not replace the record with its own failure either
    with pytest.raises(ConfigError, match="seed"):
        job.run(tiny_cfg("seed=-1"), tmp_path)
    assert json.loads((tmp_path / "results.json").read_text()) == other


def test_a_job_refused_a_held_directory_writes_nothing_there(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    live = {name: f"the live job's {name}\n" for name in ("config.yaml", "hydra.yaml", "overrides.yaml")}
    for name, text in live.items():
        (run_dir / ".hydra" / name).write_text(text)
    with rundir.hold(run_dir):
        out = _run(f"hydra.run.dir={run_dir}", "seed=84", timeout=200)
    assert out.returncode == 1 and _errors(out.stderr) == [
        f"error: config key `hydra.run.dir`: {run_dir} is in use by another running job. Fix: give each job its own "
        "directory (leave hydra.run.dir unset: the default is unique per job)"
    ]
    assert {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()} == live
    assert not (run_dir / "results.json").exists()


# ---- 2. secrets: paths are not secrets; planted secrets reach no file ------------------------------------


def test_working_directory_paths_are_kept_and_the_recorded_config_is_the_resolved_one(warm, tmp_path, monkeypatch):
    sock = tmp_path / "agent.sock"
    sock.write_text("")
    monkeypatch.setenv("PWD", str(ROOT))
    monkeypatch.setenv("OLDPWD", str(tmp_path))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))  # a credential-like name holding a path
    monkeypatch.setenv("CI_JOB_TOKEN", "short")  # too short to be searched for in other values
    assert not secrets.is_secret_name("PWD") and not secrets.is_secret_name("OLDPWD")
    assert secrets.is_secret_name("DB_PASSWORD") and secrets.is_secret_name("hub.api_key")
    cfg = compose_cfg(*TINY, f"paths.cache_dir={warm['cache']}", f"benchmark.source={ROOT / 'data' / 'tofu'}")
    cfg.seed = 84
    record = job.run(cfg, tmp_path / "run")
    assert record["config"] == OmegaConf.to_container(cfg, resolve=True)
    assert secrets.REDACTED not in json.dumps(record)


def test_planted_secrets_reach_no_written_file_and_paths_under_the_working_directory_survive(warm, tmp_path):
    data = tmp_path / "TofuCopy2024Nov28Forget01Version2"  # looks random; is a path the record must keep
    shutil.copytree(ROOT / "data" / "tofu", data)
    run_dir = tmp_path / "run"
    env = _env(HF_TOKEN=HF_SECRET, WANDB_API_KEY=WANDB_SECRET, PWD=str(tmp_path), OLDPWD=str(ROOT))
    out = _run(
        f"paths.cache_dir={warm['cache']}",
        f"benchmark.source={data}",
        f"+service.api_key={CONFIG_SECRET}",
        f"+db.password={SHORT_SECRET}",  # short: searched for as a whole word, in every file
        f"hydra.run.dir={run_dir}",
        "seed=85",
        *QUICK,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for needle in (HF_SECRET, WANDB_SECRET, CONFIG_SECRET, SHORT_SECRET):
        assert needle not in out.stdout + out.stderr
        leaks = [p for p in run_dir.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]
        assert leaks == [], leaks
    record = _record(run_dir)
    assert record["config"]["benchmark"]["source"] == str(data)  # not `<redacted>/...`
    assert record["config"]["db"]["password"] == secrets.REDACTED
    assert record["config"]["service"]["api_key"] == secrets.REDACTED
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert f"source: {data}" in saved and saved.count(secrets.REDACTED) == 2  # the api key's and password's lines
    assert f"+db.password={secrets.REDACTED}" in (run_dir / ".hydra" / "hydra.yaml").read_text()  # override_dirname
    assert f"+service.api_key={secrets.REDACTED}" in (run_dir / ".hydra" / "overrides.yaml").read_text()


# ---- 3. the job key follows the content of the data ---------------------------------------------------


def test_an_edited_data_file_is_not_answered_by_the_stale_result(warm, tmp_path, caplog):
    data = tmp_path / "tofu"
    shutil.copytree(ROOT / "data" / "tofu", data)

    def run(name: str) -> dict:
        cfg = compose_cfg(*TINY, f"paths.cache_dir={warm['cache']}", f"benchmark.source={data}", "seed=86")
        return job.run(cfg, tmp_path / name)

    first = run("a")
    with caplog.at_level(logging.INFO):
        again = run("b")  # nothing changed: the finished job answers (the test can tell reuse apart)
    assert "identical job already completed" in caplog.text and again["job_key"] == first["job_key"]

    path = data / "world_facts_perturbed.json"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["answer"] = "A different answer, so the evaluation data changed"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        fresh = run("c")
    assert "identical job already completed" not in caplog.text
    assert fresh["job_key"] != first["job_key"] and "reused_from" not in _record(tmp_path / "c")
    assert fresh["evaluation"]["unlearned"]["world_facts"] != first["evaluation"]["unlearned"]["world_facts"]


# ---- 4. corrupt cache entries are named, set aside and rebuilt ------------------------------------------


def test_corrupt_cache_entries_are_named_set_aside_and_rebuilt(warm, tmp_path, caplog):
    cache_dir = _copy_cache(warm["cache"], tmp_path / "cache")
    target = next(p.parent for p in (cache_dir / "finetuned").glob("*/meta.json") if '"target"' in p.read_text())
    retain = next(p.parent for p in (cache_dir / "finetuned").glob("*/meta.json") if '"retain"' in p.read_text())
    model = next((cache_dir / "models").iterdir())
    weights = target / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated: size and checksum disagree with COMPLETE
    evaluations = sorted(retain.glob("eval-*.json"))  # this job's, and other settings' (other tests')
    for path in evaluations:
        path.write_text(path.read_text()[:200])  # truncated cached evaluations
    (model / "COMPLETE").write_text("ok\n")  # an entry from before checksums: its header is still checked
    shard = model / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[:5000])

    with caplog.at_level(logging.INFO):
        record = job.run(compose_cfg(*TINY, f"paths.cache_dir={cache_dir}", "seed=87"), tmp_path / "run")
    assert record["status"] == "completed"
    for path in (target, model):
        assert (
            f"cache entry for {'TOFU target model' if path == target else 'tiny test model'} is corrupt" in caplog.text
        )
        assert f"{path} moved aside" in caplog.text
    assert "cache entry for the evaluation of the retain model is corrupt" in caplog.text
    used = [p for p in evaluations if f"{p} moved aside" in caplog.text]
    assert len(used) == 1 and list(retain.glob(f".{used[0].name}.corrupt-*"))
    assert "finetune_target" in record["training"] and "finetune_retain" not in record["training"]
    assert list(cache_dir.glob("finetuned/.*.corrupt-*")) and list(cache_dir.glob("models/.*.corrupt-*"))
    for entry in (target, retain, model):
        assert cache.verify(entry) is None  # rebuilt, with checksums
    assert json.loads(used[0].read_text())["suites"]  # computed again and stored


def test_cache_entries_with_the_right_shape_but_wrong_content_are_rebuilt_never_recorded(warm, tmp_path, caplog):
    cache_dir = _copy_cache(warm["cache"], tmp_path / "cache")
    poisoned = {}
    for meta in (cache_dir / "finetuned").glob("*/meta.json"):
        kind = json.loads(meta.read_text())["kind"]
        for path in meta.parent.glob("eval-*.json"):  # this job's, and other settings' (other tests')
            evaluation = json.loads(path.read_text())
            evaluation["suites"]["forget"]["prob"] = "abc" if kind == "retain" else None
            path.write_text(json.dumps(evaluation))
            poisoned[path] = kind
    cfg = compose_cfg(*TINY, f"paths.cache_dir={cache_dir}", "seed=80")  # the warm job: every model a cache hit
    (cache_dir / "jobs").mkdir()
    key = json.loads(warm["record"].read_text())["job_key"]  # the same job (paths are not in the key)
    (cache_dir / "jobs" / f"{key}.json").write_text('{"results": 12345}')
    with caplog.at_level(logging.INFO):
        record = job.run(cfg, tmp_path / "run")
    assert record["status"] == "completed" and "reused_from" not in record
    assert all(isinstance(v, float) for row in record["metrics"].values() for v in row.values())
    warned = [r.getMessage() for r in caplog.records if "is corrupt" in r.getMessage()]
    assert any("finished-job index is corrupt" in m for m in warned)
    for kind in ("target", "retain"):
        assert sum(f"evaluation of the {kind} model is corrupt" in m for m in warned) == 1, warned
    with caplog.at_level(logging.INFO):  # the identical rerun reuses the sound record, recomputes nothing
        again = job.run(compose_cfg(*TINY, f"paths.cache_dir={cache_dir}", "seed=80"), tmp_path / "again")
    assert again["metrics"] == record["metrics"] and "identical job already completed" in caplog.text


def test_partial_cache_entry_is_rebuilt(tmp_path, caplog):
    entry = cache.CacheEntry(tmp_path, "finetuned", "abc", "TOFU target model")
    entry.path.mkdir(parents=True)  # a writer that died mid-way, before builds went through a temporary directory
    (entry.path / "trainable.safetensors").write_bytes(b"half-written")
    with caplog.at_level("WARNING"):
        assert entry.ready() is False
    assert "partial" in caplog.text and not entry.path.exists()
    entry.start()
    entry.finish({"ok": True})
    assert entry.ready() is True


# ---- 5, 6, 9. bad config and data: refused before any stage, one line each, a failed record each ----------

FAULTS = {  # +fault=NAME (tests/fixtures/faults_conf/fault): the key its message names
    "seed_negative": "seed",
    "seed_float": "seed",
    "batch_zero": "unlearn.batch_size",
    "batch_float": "unlearn.batch_size",
    "max_steps_negative": "unlearn.max_steps",
    "max_steps_text": "unlearn.max_steps",
    "blur_zero3": "distributed",
    "blur_zero3_offload": "distributed",
    "bad_json_line": "benchmark.source",
    "bad_utf8": "benchmark.source",
    # issue 26: a NaN, a method option out of its range, an unknown split, an evaluation-only job that cannot
    # build the benchmark's reference models: refused before the model loads (tests/test_options.py has more)
    "lr_nan": "unlearn.learning_rate",
    "npo_beta_zero": "method.beta",
    "forget_split_unknown": "benchmark.forget_split",
    "method_none_tofu": "method",
}


def test_bad_sweep_points_fail_before_any_stage_with_one_line_and_stay_in_the_report(warm, tmp_path):
    data = tmp_path / "data"
    for name in ("bad_json", "bad_utf8"):
        shutil.copytree(ROOT / "data" / "tofu", data / name)
    lines = (data / "bad_json" / "retain_perturbed.json").read_text().splitlines(keepends=True)
    lines[3] = lines[3][:40] + "\n"  # a line cut short: not JSON
    (data / "bad_json" / "retain_perturbed.json").write_text("".join(lines))
    raw = (data / "bad_utf8" / "forget01.json").read_bytes().splitlines(keepends=True)
    raw[2] = raw[2][:20] + b"\xff\xfe" + raw[2][20:]
    (data / "bad_utf8" / "forget01.json").write_bytes(b"".join(raw))

    sweep = tmp_path / "sweep"
    out = _run(
        "-m",
        f"paths.cache_dir={warm['cache']}",
        f"hydra.searchpath=[file://{FAULTS_CONF}]",
        f"+fault=ok,{','.join(FAULTS)}",
        f"hydra.sweep.dir={sweep}",
        env=_env(FAULT_DATA=str(data)),
    )
    assert out.returncode == 1  # Hydra reports the first failure once every point ran

    def point(fault: str) -> Path:  # a sweep point's directory is named by its overrides
        return sweep / f"+fault={fault},experiment=tofu_smoke_tiny"

    errors = _errors(out.stderr)
    for fault, key in FAULTS.items():
        record = _record(point(fault))
        assert record["status"] == "failed", fault
        assert record["error"]["setting"] == key and record["error"]["stage"] == "config"
        assert record["timings"] == {} and record["choices"]["fault"] == fault  # no stage ran
        assert record["error"]["message"].startswith(f"config key `{key}`") and "Fix:" in record["error"]["message"]
        assert f"error: {record['error']['message']}" in errors, fault
    assert "retain_perturbed.json line 4 is not valid JSON" in _record(point("bad_json_line"))["error"]["message"]
    assert "forget01.json line 3 is not UTF-8" in _record(point("bad_utf8"))["error"]["message"]
    assert "BLUR cannot run under distributed=zero3" in _record(point("blur_zero3"))["error"]["message"]
    assert _record(point("ok"))["status"] == "completed"

    preset = load_preset("generic", ["rows=[choices.fault]", "columns=[forget_prob]"])
    table = write_report([sweep], preset, plots=False)
    rows = {line.split("|")[1].strip() for line in table["markdown"].splitlines() if line.startswith("| ")}
    assert "ok" in rows and all(f"{fault} †" in rows for fault in FAULTS)


# ---- 7. broken report inputs -------------------------------------------------------------------------


def test_malformed_results_files_are_skipped_and_an_empty_record_is_a_dagger_row(warm, tmp_path, caplog, capsys):
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(warm["record"], good / "results.json")
    bad = {"a-list": b"[1, 2]", "a-null": b"null", "not-utf8": b'{"status": "\xff\xfe"}', "garbage": b"{{{"}
    for name, content in bad.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_bytes(content)
    (tmp_path / "empty-record").mkdir()
    (tmp_path / "empty-record" / "results.json").write_text("{}")

    with caplog.at_level(logging.WARNING):
        code = report.main([str(tmp_path), "report=tofu"])  # with its Pareto plot
    assert code == 0
    for name in bad:
        assert str(tmp_path / name / "results.json") in caplog.text, name
    markdown = capsys.readouterr().out
    assert "| empty-record (record without fields) † |" in markdown
    assert "| ? " not in markdown and "| NPO |" in markdown


# ---- 8. exit status agrees with the record --------------------------------------------------------------


def test_read_only_cache_with_every_entry_a_hit_completes_and_exits_0(warm, tmp_path):
    with _tmpfs(tmp_path / "ro-cache", "16m") as cache_dir:
        _copy_cache(warm["cache"], cache_dir)
        _remount_read_only(cache_dir)
        out = _run(f"paths.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path / 'run'}", "seed=88", *QUICK[:1])
    assert out.returncode == 0, out.stderr[-3000:]
    assert _errors(out.stderr) == []
    assert _record(tmp_path / "run")["status"] == "completed"
    assert "could not index the finished job" in out.stdout + out.stderr  # a warning: the index only speeds up reruns


def _start(log: Path, *overrides: str) -> subprocess.Popen:
    """A job in the background, its console to ``log``.out / ``log``.err (files: a pipe nobody reads fills up)."""
    out, err = open(f"{log}.out", "w"), open(f"{log}.err", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(_cmd(*overrides), cwd=ROOT, env=_env(), stdout=out, stderr=err, text=True)


def _console(log: Path) -> tuple[str, str]:
    return Path(f"{log}.out").read_text(), Path(f"{log}.err").read_text()


def _start_two_ranks(warm: dict, tmp_path: Path, run_dir: Path, seed: int) -> subprocess.Popen:
    """A 2-rank DDP job of endless unlearning, returned once its reference models are done (cache hits)."""
    proc = _start(
        tmp_path / "console",
        f"paths.cache_dir={warm['cache']}",
        "distributed=ddp",
        "distributed.nproc_per_node=2",
        "unlearn.batch_size=2",
        "benchmark.finetune.batch_size=4",  # the one-process entries (2 ranks x 4 = 8): cache hits
        "unlearn.max_steps=100000",
        f"hydra.run.dir={run_dir}",
        f"seed={seed}",
    )
    _wait_for_stage(run_dir, "finetuned_models", proc)
    return proc


def test_sigterm_to_two_ddp_ranks_records_interrupted_and_exits_130_without_traceback(warm, tmp_path):
    run_dir = tmp_path / "run"
    proc = _start_two_ranks(warm, tmp_path, run_dir, seed=89)
    proc.send_signal(signal.SIGTERM)  # while the ranks unlearn
    proc.wait(timeout=120)
    out, err = _console(tmp_path / "console")
    assert proc.returncode == 130, err[-3000:]
    assert _errors(err) == []
    assert (out + err).count("results.json marked `interrupted`") == 1  # rank 0's one line
    assert _record(run_dir)["status"] == "interrupted"


def _rank_pid(launcher: subprocess.Popen, rank: int) -> int:
    """The process id of local rank ``rank`` started by ``launcher`` (its environment says RANK=rank)."""
    for child in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split():
        if f"RANK={rank}".encode() in Path(f"/proc/{child}/environ").read_bytes().split(b"\0"):
            return int(child)
    raise AssertionError(f"no rank {rank} under {launcher.pid}")


def test_a_rank_that_dies_makes_the_job_failed_naming_the_rank_the_signal_and_the_stage(warm, tmp_path):
    # rank 1 aborts (`terminate called without an active exception`); rank 0 killed by SIGKILL, which leaves a
    # `running` record, is tests/distributed/test_rank_failure.py's (the same verdict, without two more ranks)
    rank, signum = 1, signal.SIGABRT
    run_dir = tmp_path / "run"
    proc = _start_two_ranks(warm, tmp_path, run_dir, seed=91)
    stage = "unlearn"  # 100000 steps: the stage the ranks are in when one is lost
    while _record(run_dir).get("current_stage") != stage:
        assert proc.poll() is None, _console(tmp_path / "console")[1][-3000:]
        time.sleep(0.2)
    os.kill(_rank_pid(proc, rank), signum)  # a crash (abort), not a signal to the job
    proc.wait(timeout=120)
    _, err = _console(tmp_path / "console")
    record = _record(run_dir)
    assert proc.returncode == 1 and record["status"] == "failed", err[-3000:]
    how = f"rank {rank} was killed by {signum.name} during stage `{stage}`"
    # (a progress bar of the surviving rank may precede the line on its line)
    assert [line[line.index("error: ") :] for line in err.splitlines() if "error: " in line] == [
        f"error: {how}; the other ranks were stopped (see {run_dir})"
    ]
    assert record["error"]["rank"] == rank and record["error"]["signal"] == signum.name
    assert record["error"]["stage"] == stage


def test_kill_9_then_sigterm_then_a_rerun_in_the_same_directory(warm, tmp_path):
    run_dir = tmp_path / "run"
    args = (f"paths.cache_dir={warm['cache']}", f"hydra.run.dir={run_dir}", "seed=90", "unlearn.max_steps=100000")

    proc = _start(tmp_path / "first", *args)
    first = _wait_for_stage(run_dir, "finetuned_models", proc)
    proc.kill()  # kill -9: nothing can be written
    proc.wait(timeout=60)
    assert _record(run_dir)["status"] == "running"

    time.sleep(1.1)  # records stamp their start by the second
    proc = _start(tmp_path / "second", *args)  # the dead job's lock on the directory went with it
    _wait_for_stage(run_dir, "finetuned_models", proc, after=first)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    out, err = _console(tmp_path / "second")
    assert proc.returncode == 130 and _errors(err) == [], (out + err)[-3000:]
    assert (out + err).count("results.json marked `interrupted`") == 1
    assert _record(run_dir)["status"] == "interrupted"

    # another job (fewer steps: another job key) is refused the directory, unless asked to replace the record
    with pytest.raises(ConfigError, match="holds the record of another job"):
        job.run(compose_cfg(*TINY, args[0], "seed=90", "unlearn.max_steps=3"), run_dir)
    assert _record(run_dir)["status"] == "interrupted"
    cfg = compose_cfg(*TINY, args[0], "seed=90", "unlearn.max_steps=3", "+overwrite=true")
    assert job.run(cfg, run_dir)["status"] == "completed"
    assert _record(run_dir)["status"] == "completed"


def test_an_error_raised_while_a_signal_unwinds_a_stage_is_still_an_interruption(tiny_cfg, tmp_path, monkeypatch):
    # a library whose cleanup fails as the signal's exception passes through it (the exit status was 1, the
    # record `failed`): the job received SIGTERM, so it is `interrupted`, exit 130
    from runner import unlearning_job

    def unlearn_then_cleanup_fails(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the job's handler raises here, inside the stage
            time.sleep(5)
        finally:
            raise RuntimeError("a library's cleanup failed while the stage unwound")

    monkeypatch.setattr(unlearning_job, "unlearn", unlearn_then_cleanup_fails)
    with pytest.raises(JobInterrupted) as caught:
        job.run(tiny_cfg("method=ga", "seed=94"), tmp_path)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert _record(tmp_path)["status"] == "interrupted" and _record(tmp_path)["error"]["message"].startswith("stopped")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the job's handler is gone again


# ---- the machine: full and read-only file systems --------------------------------------------------------


def test_a_full_cache_disk_fails_with_one_line_naming_the_entry(warm, tmp_path):
    run_dir = tmp_path / "run"
    with _tmpfs(tmp_path / "small", "600k") as cache_dir:
        _copy_cache(warm["cache"], cache_dir, kinds=("models",))  # ~470 kB: a reference model does not fit
        out = _run(
            f"paths.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}", "seed=91", "benchmark.finetune.max_steps=2"
        )
        leftovers = list(cache_dir.glob("finetuned/.*.tmp-*")) + list(cache_dir.glob("finetuned/*/"))
    assert out.returncode == 1
    errors = _errors(out.stderr)
    assert len(errors) == 1 and "no space left on the device" in errors[0] and "Fix:" in errors[0]
    assert str(cache_dir / "finetuned") in errors[0]
    assert leftovers == []  # the half-written entry was dropped, not left as a partial one
    record = _record(run_dir)
    assert record["status"] == "failed" and record["error"]["stage"] == "finetuned_models"


def test_a_read_only_run_directory_is_one_line_before_hydra_writes_there(tmp_path):
    with _tmpfs(tmp_path / "ro", "1m") as mount:
        _remount_read_only(mount)
        out = _run(f"hydra.run.dir={mount / 'run'}")
    assert out.returncode == 1
    errors = _errors(out.stderr)
    assert len(errors) == 1 and "config key `hydra.run.dir`" in errors[0] and "Read-only file system" in errors[0]


def test_a_cache_directory_that_cannot_be_created_is_a_config_error_with_a_record(tiny_cfg, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="paths.cache_dir.*cannot be created"):
        job.run(tiny_cfg(f"paths.cache_dir={blocker / 'cache'}"), tmp_path / "run")
    record = _record(tmp_path / "run")
    assert record["status"] == "failed" and record["error"]["setting"] == "paths.cache_dir"


# ---- 10. divergence that is not a NaN loss --------------------------------------------------------------


def test_an_optimizer_step_that_overflows_is_divergence(tiny_cfg, tmp_path):
    # the fused AdamW kernel writes the overflow into the weights instead of raising (the per-tensor loop
    # raised "overflow" from its Python step size): the next step's forward pass sees non-finite weights
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        job.run(tiny_cfg("method=ga", "unlearn.learning_rate=1e38", "seed=92"), tmp_path)
    error = _record(tmp_path)["error"]
    assert _record(tmp_path)["status"] == "failed" and error["stage"] == "unlearn" and error["step"] == 2


def test_a_collapse_with_a_finite_loss_fails_by_the_documented_weight_norm_check(tiny_cfg, tmp_path):
    with pytest.raises(TrainingDiverged, match="max_weight_norm_ratio"):
        job.run(tiny_cfg("method=npo", "unlearn.learning_rate=1e6", "seed=93"), tmp_path / "checked")
    error = _record(tmp_path / "checked")["error"]
    assert error["stage"] == "unlearn" and error["step"] == 12
    # the check is a setting, not a hidden rule: turned off, the same run completes (with a collapsed model)
    off = job.run(
        tiny_cfg("method=npo", "unlearn.learning_rate=1e6", "unlearn.max_weight_norm_ratio=null", "seed=93"),
        tmp_path / "off",
    )
    assert off["status"] == "completed" and off["metrics"]["unlearned"]["retain_prob"] < 0.01


def test_an_infinite_gradient_norm_with_a_finite_loss_is_divergence(tmp_path):
    model = random_llama()
    weight = model.model.layers[0].mlp.down_proj.weight
    with torch.no_grad():
        weight.zero_()

    def loss(m, batch):  # d sqrt(|w|) / dw is infinite at w = 0, the loss itself is 0
        return weight.abs().sqrt().sum(), {}

    rows = [{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}] * 4
    train_cfg = OmegaConf.create(
        {"epochs": 1, "batch_size": 2, "grad_accum": 1, "learning_rate": 1e-3, "lr_scheduler": "constant"}
        | {"warmup_ratio": 0.0, "weight_decay": 0.0, "max_grad_norm": 0.0}
    )
    with pytest.raises(TrainingDiverged, match="gradient norm is (inf|nan) at step 1"):
        training.train(
            model,
            training.ListDataset(rows),
            training.collate_single(0),
            loss,
            train_cfg,
            0,
            "fp32",
            tmp_path,
            stage="unlearn",
        )


# ---- left-overs of killed builds ---------------------------------------------------------------------


def test_temporary_directories_of_killed_builds_are_removed_at_start(warm, tmp_path):
    cache_dir = _copy_cache(warm["cache"], tmp_path / "cache")
    stale = cache_dir / "finetuned" / ".0123456789abcdef.tmp-host-4242-x1"
    stale.mkdir()
    (stale / "trainable.safetensors").write_bytes(b"half")
    writer = cache.CacheEntry(cache_dir, "finetuned", "fedcba9876543210", "a build in progress")
    busy = writer.start()  # a live writer holds its entry's lock: its directory stays
    try:
        job.run(compose_cfg(*TINY, f"paths.cache_dir={cache_dir}", "seed=94", "unlearn.max_steps=2"), tmp_path / "r")
        assert not stale.exists() and busy.exists()
    finally:
        writer.abandon()
    assert not busy.exists()  # a failed build drops its own directory
