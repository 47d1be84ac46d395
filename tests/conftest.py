"""Shared fixtures. Everything a test writes lives under pytest's tmp dirs; Prefect, MLflow and DVC state too."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.projects import TRIAGE

REPO = Path(__file__).resolve().parent.parent
# Before any test module imports prefect: keep its state out of the user's home.
_STATE = Path(tempfile.mkdtemp(prefix="slmops-test-state-"))
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ["DVC_SITE_CACHE_DIR"] = str(_STATE / "dvc-site")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def slmops(
    *args: str, cwd: Path | None = None, input: str | None = None, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run the real ``slmops`` console command (an ``env`` value of None removes that variable)."""
    exe = Path(sys.executable).with_name("slmops")
    merged = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    proc = subprocess.run(
        [str(exe), *args], cwd=cwd or REPO, input=input, capture_output=True, text=True, env=merged, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"slmops {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def new_project(parent: Path, example: str) -> Path:
    """``slmops init`` of an example project under ``parent``: what a user gets from a fresh install."""
    work = parent / example
    slmops("init", str(work), "--example", example, cwd=parent)
    return work


def _pipeline_run(tmp_path_factory, example: str, profile: str = "smoke", overrides: tuple[str, ...] = ()) -> dict:
    """``slmops init`` an example project, then ``slmops demo build`` and ``slmops run`` on ``profile`` (with
    ``--set`` ``overrides``) in it. Its commands report to this worker's Prefect server (``prefect_api``)."""
    work = new_project(tmp_path_factory.mktemp(f"{example}-{profile}"), example)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlruns.db'}", "PREFECT_API_URL": _prefect_api(tmp_path_factory)}
    build = slmops("demo", "build", "--profile", profile, "--project", str(work), env=env)
    sets = [a for key in overrides for a in ("--set", key)]
    proc = slmops("run", "--profile", profile, "--project", str(work), *sets, env=env)
    return {"work": work, "stdout": proc.stdout, "build_stdout": build.stdout, "env": env}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_PREFECT: dict[str, object] = {}  # this worker's Prefect server: its URL and process


def _prefect_api(tmp_path_factory) -> str:
    """One real Prefect server (SQLite, no UI, no background services) per test worker, started on first use.

    Without ``PREFECT_API_URL`` every ``slmops run``/``monitor`` starts a temporary server of its own and waits
    for it (Prefect's embedded default: ~7 s of each command here). That default still runs in
    ``tests/test_own_project.py`` and in ``make demo``."""
    if "url" not in _PREFECT:
        home, port = tmp_path_factory.mktemp("prefect-server"), free_port()
        env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_LOGGING_LEVEL": "WARNING"}
        env.pop("PREFECT_API_URL", None)
        cmd = [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--no-ui", "--no-services"]
        log = open(home / "server.log", "w")  # noqa: SIM115 (open while the server runs)
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + 180
        while not _healthy(url + "/health"):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the tests' Prefect server did not start:\n{(home / 'server.log').read_text()}")
            time.sleep(0.5)
        _PREFECT.update(url=url, proc=proc)
    return str(_PREFECT["url"])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def _stop_prefect_server():
    yield
    proc = _PREFECT.get("proc")
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def tracking_store(uri: str) -> Iterator[None]:
    """MLflow pointed at ``uri`` for a block, then back where it was: the URI set before, or none at all.

    ``previous = mlflow.get_tracking_uri()`` and ``set_tracking_uri(previous)`` is no restore: with nothing set,
    MLflow 3 answers its default, ``sqlite:///<cwd>/mlflow.db``, and setting it also writes it into
    ``MLFLOW_TRACKING_URI``, so every later MLflow call and ``slmops`` child of that worker used an
    ``mlflow.db`` in the repository (pytest's working directory)."""
    import mlflow

    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # None: unset, the variable too


# MLflow's default stores (3.x: ./mlflow.db; 2.x: ./mlruns) in the working directory and the repository root.
_DEFAULT_STORES = {d / name for d in {REPO, Path.cwd()} for name in ("mlflow.db", "mlruns")}
_STORES_BEFORE = {path for path in _DEFAULT_STORES if path.exists()}


@pytest.fixture(autouse=True)
def _no_default_mlflow_store():
    """Fail the test that leaves MLflow pointed at its default store in the working directory, or during which
    one appears there (under xdist, possibly another worker's test: both share the repository)."""
    yield
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    pointed = sorted(str(path) for path in _DEFAULT_STORES if uri.endswith(str(path)))
    appeared = sorted(str(path) for path in _DEFAULT_STORES - _STORES_BEFORE if path.exists())
    _STORES_BEFORE.update(map(Path, appeared))  # reported once, by the test it appeared in
    if pointed or appeared:
        pytest.fail(
            f"MLflow's default store in the working directory: MLFLOW_TRACKING_URI={uri or '(unset)'}, "
            f"appeared {appeared or 'nothing'} (point MLflow at a tmp store: tests.conftest.tracking_store)"
        )


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> dict:
    """One end-to-end pipeline run on the smoke profile, shared by the tests that need trained artifacts.

    ``pristine``: a copy of its project taken as the run ended, before any test changed it, for a test that must
    change a project (move aliases, retrain) without building its own (``moved_project``)."""
    run = _pipeline_run(tmp_path_factory, "ticket_triage")
    os.environ["MLFLOW_TRACKING_URI"] = run["env"]["MLFLOW_TRACKING_URI"]  # the in-process registry helpers' store
    pristine = tmp_path_factory.mktemp("smoke-pristine") / "ticket_triage"
    shutil.copytree(run["work"], pristine, symlinks=True)
    return run | {"pristine": pristine}


def moved_project(run: dict, dest: Path) -> dict:
    """``run``'s pristine project copied to ``dest``, its own from then on: its MLflow store (SQLite) is the copy's,
    with every path of the original project in it (experiments' artifact locations, runs' artifact URIs, model
    versions' sources) rewritten to ``dest``, so nothing it registers or logs lands in the original."""
    work = Path(shutil.copytree(run["pristine"], dest, symlinks=True))
    old, new = str(run["work"]), str(work)
    db = sqlite3.connect(work / "mlruns.db")
    with db:  # one transaction
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            columns = [
                c[1]
                for c in db.execute(f'PRAGMA table_info("{table}")')
                if c[2].upper().startswith(("TEXT", "VARCHAR"))
            ]
            for column in columns:
                db.execute(
                    f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) WHERE instr("{column}", ?) > 0',
                    (old, new, old),
                )
    db.close()
    return {"work": work, "env": run["env"] | {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlruns.db'}"}}


@pytest.fixture(scope="session")
def reviews_run(tmp_path_factory) -> dict:
    """The second task (review_insights: a spec plus generated data, no code of its own) on the smoke profile."""
    return _pipeline_run(tmp_path_factory, "review_insights")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A tokenizer, a random tiny Llama (transformers folder) and its ONNX export: untrained, but real."""
    from transformers import AutoTokenizer, set_seed

    from slmops.config import TinyModelConfig
    from slmops.demo.generate import generate
    from slmops.demo.models import init_model
    from slmops.demo.tokenizer import run as train_tokenizer
    from slmops.export.quantize import export_onnx, quantize_int8
    from slmops.io import write_jsonl
    from slmops.tasks import load_task

    root = tmp_path_factory.mktemp("tiny")
    sets = generate(1, 60, 120, 20)
    prepared, raw = root / "prepared", root / "raw"
    write_jsonl(prepared / "train.jsonl", sets["seed"])
    write_jsonl(prepared / "val.jsonl", sets["seed"][:5])
    write_jsonl(prepared / "pool.jsonl", sets["pool"])
    write_jsonl(prepared / "test.jsonl", sets["test"])
    for name in ("seed", "pool"):
        write_jsonl(raw / f"{name}.jsonl", sets[name])
    train_tokenizer(512, task=load_task("ticket_triage", TRIAGE), raw_dir=raw, out_dir=root / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    set_seed(0)  # the same random weights whichever tests this worker ran before (they draw from torch's RNG too)
    model = init_model(TinyModelConfig(hidden_size=64, num_layers=2, intermediate_size=128, num_heads=2), tokenizer)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    export_onnx(root / "model", root / "onnx")
    quantize_int8(root / "onnx", root / "int8")
    return {
        "root": root,
        "prepared": prepared,
        "tokenizer": root / "tokenizer",
        "model": root / "model",
        "onnx": root / "onnx",
        "int8": root / "int8",
    }


SLOW_FIXTURES = {"tiny_models", "smoke_run", "reviews_run", "engine"}  # they train, export or start an engine
SHARED_PIPELINES = ("smoke_run", "reviews_run")  # session fixtures worth building once per run, not per worker
# The groups that take longest, longest first: they start first, so no worker begins a 12-minute group after the
# others have run out of work. Their seconds on one of 3 workers (a timeline of a full run, 2026-12-06): stack ~780,
# reviews_run ~420, smoke_run ~380 before the loop's tests joined it (they start from a copy of its project, ~450 s
# in a group of their own before), engine_backend ~80. xdist's own order (the groups with the most tests first; off
# with --no-loadscope-reorder in the Makefile) started the stack ninth.
LONG_GROUPS = ("tests.test_stack", "smoke_run", "reviews_run", "tests.test_engine_backend")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the xdist_group marks into groups
def pytest_collection_modifyitems(items):
    """Every test that trains, exports, benchmarks or starts an engine is `slow`: `make test-fast` skips it.

    ``make test`` runs on pytest-xdist workers (the Makefile's TEST_WORKERS) with ``--dist loadgroup``: a
    module's tests stay together (its module-scoped servers start once), and every module that uses a shared
    pipeline goes to the worker that builds it, so each pipeline is built once per run. The long groups come
    first (``LONG_GROUPS``), the rest in collection order."""
    by_module: dict[str, set[str]] = {}
    for item in items:
        by_module.setdefault(item.module.__name__, set()).update(getattr(item, "fixturenames", ()))
    for item in items:
        own = set(getattr(item, "fixturenames", ()))
        if SLOW_FIXTURES & own:
            item.add_marker(pytest.mark.slow)
        # The pipeline the test uses, else the one its module's fixtures may use, else the module itself.
        shared = [name for name in SHARED_PIPELINES if name in own]
        shared += [name for name in SHARED_PIPELINES if name in by_module[item.module.__name__]]
        item.add_marker(pytest.mark.xdist_group(shared[0] if shared else item.module.__name__))
    rank = {group: i for i, group in enumerate(LONG_GROUPS)}
    items.sort(key=lambda item: rank.get(item.get_closest_marker("xdist_group").args[0], len(rank)))  # stable
