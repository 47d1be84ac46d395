"""The team's stack end to end, on loopback: ``slmops stack up`` (PostgreSQL, SeaweedFS S3, the MLflow and Prefect
servers, a process pool and a worker) in a fresh project on free ports, the smoke pipeline against it, a DVC
push and a second clone's pull, then faults (the object store down at registration, PostgreSQL restarted) and
``slmops stack down``. One stack for the whole module; each test reads what the ones before it left.

Cost on the 2-core machine: see the README's "Scaling out" (the module prints its own timings with -s).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import new_project

pytestmark = [pytest.mark.stack, pytest.mark.slow]
if not (list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("initdb")):
    pytestmark.append(pytest.mark.skip(reason="PostgreSQL is not installed (make install installs it as root)"))

SLMOPS = str(Path(sys.executable).with_name("slmops"))
DVC = str(Path(sys.executable).with_name("dvc"))
# Set by other fixtures or the user's shell: they would point this module's commands away from its stack.
FOREIGN = ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "SLMOPS_PROFILE", "SLMOPS_PROJECT", "AWS_ACCESS_KEY_ID")
TIMINGS: dict[str, float] = {}


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def free_ports() -> dict[str, int]:
    """Ports for each server; the object store's block (S3 .. +8, and its admin gRPC at +10004) all free."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 29000, 20)
        wanted = [*range(base, base + 13), base + 4 + 10000]
        if all(_free(p) for p in wanted):
            return {"postgres": base + 10, "mlflow": base + 11, "prefect": base + 12, "object_store": base}
    raise RuntimeError("no free block of ports")


def run(*args: str, cwd: Path, env: dict[str, str], check: bool = True, timed: str | None = None):
    started = time.perf_counter()
    proc = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if timed:
        TIMINGS[timed] = round(time.perf_counter() - started, 1)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args[:3])} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def stack():
    """A project with a `stack:` section, its stack up, the smoke pipeline run on it."""
    parent = Path(tempfile.mkdtemp(prefix="slmops-stack-"))
    parent.chmod(0o755)  # PostgreSQL runs as its own user (slmops runs as root here): it must reach the project
    work = new_project(parent, "ticket_triage")
    ports = free_ports()
    section = {name: {"port": port} for name, port in ports.items()}
    with open(work / "slmops.yaml", "a", encoding="utf-8") as fh:
        fh.write("stack: " + json.dumps(section) + "\n")
    keys = {
        "SLMOPS_STACK_PG_PASSWORD": secrets.token_hex(12),
        "SLMOPS_STACK_S3_ACCESS_KEY": "slmops" + secrets.token_hex(4),
        "SLMOPS_STACK_S3_SECRET_KEY": secrets.token_hex(16),
    }
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN} | keys
    ctx = {"work": work, "env": env, "keys": keys, "ports": ports, "parent": parent}
    try:
        ctx["up"] = run(SLMOPS, "stack", "up", cwd=work, env=env, timed="stack up (cold)").stdout
        ctx["endpoints"] = json.loads((work / ".slmops" / "stack" / "endpoints.json").read_text())
        run(SLMOPS, "demo", "build", "--profile", "smoke", cwd=work, env=env, timed="demo build on the stack")
        ctx["run"] = run(
            SLMOPS, "run", "--profile", "smoke", cwd=work, env=env, timed="smoke pipeline on the stack"
        ).stdout
        yield ctx
    finally:
        run(SLMOPS, "stack", "down", cwd=work, env=env, check=False)
        shutil.rmtree(parent, ignore_errors=True)
        print("\nstack test timings (s):", json.dumps(TIMINGS))


def client_env(stack) -> dict[str, str]:
    """A client of the stack: the servers' URLs, as `slmops stack up` wrote them."""
    ep = stack["endpoints"]
    return stack["env"] | {"MLFLOW_TRACKING_URI": ep["mlflow"], "PREFECT_API_URL": ep["prefect_api"]}


def python(stack, code: str, **extra_env: str) -> dict:
    """Run ``code`` (which prints one JSON line last) as a client of the stack, in the project."""
    env = client_env(stack) | extra_env
    proc = run(sys.executable, "-c", code, cwd=stack["work"], env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def s3_keys(stack, prefix: str) -> list[str]:
    import boto3

    keys = stack["keys"]
    s3 = boto3.client(
        "s3", endpoint_url=stack["endpoints"]["s3"], region_name="us-east-1",
        aws_access_key_id=keys["SLMOPS_STACK_S3_ACCESS_KEY"], aws_secret_access_key=keys["SLMOPS_STACK_S3_SECRET_KEY"],
    )  # fmt: skip
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stack["endpoints"]["bucket"], Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def test_up_is_idempotent_and_status_shows_every_part(stack):
    again = run(SLMOPS, "stack", "up", cwd=stack["work"], env=stack["env"], timed="stack up (already up)").stdout
    for part in ("postgres", "object store", "mlflow", "prefect"):
        assert f"{part}: already running" in again
    status = run(SLMOPS, "stack", "status", cwd=stack["work"], env=stack["env"]).stdout
    lines = {line.split()[0]: line for line in status.splitlines()}
    assert set(lines) >= {"postgres", "object", "mlflow", "prefect", "slmops-worker-1", "dvc"}, status
    assert all(" up " in line for line in lines.values()), status
    assert f"http://127.0.0.1:{stack['ports']['mlflow']}" in lines["mlflow"]


def test_secrets_stay_out_of_files_and_logs(stack):
    state = stack["work"] / ".slmops" / "stack"
    written = [state / "endpoints.json", *state.glob("logs/*.log"), stack["work"] / "logs" / "slmops.log"]
    written += [stack["work"] / "params.yaml", stack["work"] / ".dvc" / "config"]
    for path in written:
        text = path.read_text(errors="replace")
        for name, value in stack["keys"].items():
            assert value not in text, f"{name}'s value is in {path}"
    params = python(
        stack,
        "import json, mlflow; run = mlflow.search_runs(experiment_names=['slmops'], output_format='list')[0]; "
        "print(json.dumps(run.data.params))",
    )
    assert not [k for k, v in params.items() if any(s in v for s in stack["keys"].values())]


def test_run_registry_and_artifacts_land_on_the_servers(stack):
    assert "poc gate:   passed, registered version 1" in stack["run"], stack["run"][-2000:]
    assert f"MLflow UI:  {stack['endpoints']['mlflow']}/#/experiments/" in stack["run"]
    found = python(
        stack,
        "import json, mlflow; c = mlflow.MlflowClient(); v = c.get_model_version_by_alias('ticket-triage-slm', 'poc'); "
        "runs = mlflow.search_runs(experiment_names=['slmops'], output_format='list'); "
        "print(json.dumps({'version': v.version, 'tags': v.tags, 'source': v.source, "
        "'runs': sorted(r.info.run_name for r in runs), 'artifacts': runs[0].info.artifact_uri}))",
    )
    assert found["version"] == "1" and "sha256" in found["tags"]
    assert {"pipeline-smoke", "finetune", "evaluate", "parity"} <= set(found["runs"])
    assert found["artifacts"].startswith("mlflow-artifacts:/")  # proxied by the server ...
    stored = s3_keys(stack, "mlflow/")  # ... into the S3 bucket
    assert any(k.endswith("/int8/model.onnx") and "/models/" in k for k in stored), stored[:20]
    assert any("/eval/" in k for k in stored)
    import httpx

    flow_runs = httpx.post(stack["endpoints"]["prefect_api"] + "/flow_runs/filter", json={}, timeout=30).json()
    states = sorted(r["state_type"] for r in flow_runs)
    assert states == ["COMPLETED", "COMPLETED"], states  # demo build + pipeline, recorded by the server


def test_dvc_push_then_a_second_clone_pulls_a_clean_copy(stack):
    work, env = stack["work"], stack["env"]
    keys = stack["keys"]
    aws = {
        "AWS_ACCESS_KEY_ID": keys["SLMOPS_STACK_S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": keys["SLMOPS_STACK_S3_SECRET_KEY"],
    }
    run(SLMOPS, "dvc", "--profile", "smoke", cwd=work, env=env)
    run(DVC, "commit", "--force", "-q", cwd=work, env=env)
    run(
        DVC, "push", "-q", cwd=work, env=env | aws, timed="dvc push"
    )  # to the stack's bucket: `stack up` set the remote
    assert s3_keys(stack, "dvc/")
    run("git", "add", "-A", cwd=work, env=env)
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a run on the stack", cwd=work, env=env)
    clone = stack["parent"] / "clone"
    run("git", "clone", "-q", str(work), str(clone), cwd=stack["parent"], env=env)
    run(DVC, "pull", "-q", cwd=clone, env=env | aws, timed="dvc pull (second clone)")
    # The clone has no endpoints file: the servers come from the environment. `slmops dvc` regenerates the
    # pipeline files (and the empty inference log the harvest stage depends on); they must match the commit.
    run(SLMOPS, "dvc", "--profile", "smoke", cwd=clone, env=client_env(stack) | aws)
    assert run("git", "status", "--porcelain", cwd=clone, env=env).stdout.strip() == ""
    status = run(DVC, "status", cwd=clone, env=env | aws).stdout
    assert "up to date" in status, status
    for path in ("models/student_onnx/int8/model.onnx", "data/prepared/train.jsonl"):
        assert (clone / path).read_bytes() == (work / path).read_bytes()


REGISTER = """
import json, mlflow
from pathlib import Path
from slmops.registry import aliases
mlflow.set_experiment("slmops")
error = None
with mlflow.start_run(run_name="registration-fault"):
    try:
        version = aliases.register(Path("models/student_onnx/int8"), "ticket-triage-slm", {"accuracy": 0.5})
    except aliases.RegistrationError as err:
        version, error = None, str(err)
versions = mlflow.MlflowClient().search_model_versions("name='ticket-triage-slm'")
print(json.dumps({"version": version, "error": error, "versions": sorted(v.version for v in versions),
                  "tagged": all("sha256" in v.tags for v in versions)}))
"""


def test_object_store_down_at_registration_registers_nothing_and_a_retry_succeeds(stack):
    from slmops.config import Layout
    from slmops.stack import procs

    assert procs.stop("object-store", Layout(root=stack["work"]))
    # MLflow's client retries a failing request 7 times with backoff (minutes); one retry is enough to show it.
    failed = python(stack, REGISTER, MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1")
    assert failed["version"] is None and "artifact store" in failed["error"] and "nothing registered" in failed["error"]
    assert failed["versions"] == ["1"]
    restarted = run(SLMOPS, "stack", "up", cwd=stack["work"], env=stack["env"], timed="stack up (restart the store)")
    assert "object store: SeaweedFS S3 on" in restarted.stdout and "mlflow: already running" in restarted.stdout
    retried = python(stack, REGISTER)
    assert retried["version"] == "2" and retried["error"] is None
    assert retried["versions"] == ["1", "2"] and retried["tagged"]


def test_postgres_restarted_the_servers_and_the_next_run_recover(stack):
    from slmops.config import Layout, load_params
    from slmops.stack import postgres

    cfg = load_params("smoke", project=stack["work"]).stack
    assert postgres.stop(cfg.postgres, Layout(root=stack["work"]))
    assert "postgres: started" in run(SLMOPS, "stack", "up", cwd=stack["work"], env=stack["env"]).stdout
    rerun = run(
        SLMOPS, "run", "--profile", "smoke", cwd=stack["work"], env=stack["env"], timed="no-op rerun on the stack"
    )
    assert "already holds poc" in rerun.stdout, rerun.stdout[-2000:]
    assert rerun.stdout.count(" cached ") >= 8


def test_down_stops_every_part_and_keeps_the_data(stack):
    work, env = stack["work"], stack["env"]
    down = run(SLMOPS, "stack", "down", cwd=work, env=env, timed="stack down").stdout
    assert "postgres: stopped" in down and "object-store: stopped" in down
    status = run(SLMOPS, "stack", "status", cwd=work, env=env, check=False)
    assert status.returncode == 1 and " up " not in status.stdout
    state = work / ".slmops" / "stack"
    assert (state / "postgres" / "PG_VERSION").is_file() and any((state / "seaweedfs").iterdir())
    assert not (state / "endpoints.json").exists()
    refused = run(SLMOPS, "run", "--profile", "smoke", cwd=work, env=env, check=False)
    assert refused.returncode == 2 and "the stack is not up" in refused.stderr
