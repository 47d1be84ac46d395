"""The team's stack end to end, on loopback: ``slmops stack up`` (PostgreSQL, SeaweedFS S3, the MLflow and Prefect
servers, a process pool and a worker) in a fresh project on free ports, the smoke pipeline against it, a DVC
push and a second clone's pull, then faults (the object store down at registration, PostgreSQL restarted) and
``slmops stack down``. One stack for the whole module; each test reads what the ones before it left.

Cost on the 2-core machine: see the README's "Scaling out" (the module prints its own timings with -s).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import free_port, new_project
from tests.stackkit import (
    AWAIT_RETRAIN,
    DVC,
    FOREIGN,
    LOOP,
    POC_VERSION,
    SLMOPS,
    TIMINGS,
    VERSIONS,
    api,
    client_env,
    decisions,
    free_ports,
    log_shifted_traffic,
    python,
    run,
    s3_keys,
    stage_task_runs,
    start_deployment,
    toy_gates,
    wait_final,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow]
if not (list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("initdb")):
    pytestmark.append(pytest.mark.skip(reason="PostgreSQL is not installed (make install installs it as root)"))


@pytest.fixture(scope="module")
def stack():
    """A project with a `stack:` section, its stack up, the smoke pipeline run on it."""
    parent = Path(tempfile.mkdtemp(prefix="slmops-stack-"))
    parent.chmod(0o755)  # PostgreSQL runs as its own user (slmops runs as root here): it must reach the project
    work = new_project(parent, "ticket_triage")
    ports = free_ports()
    section = {name: {"port": port} for name, port in ports.items()}
    section["prefect"] |= {"workers": 2, "auth_string_env": "SLMOPS_STACK_PREFECT_AUTH"}  # two: one retrain at once
    section["prefect"] |= {"heartbeat_s": 30, "zombie_after_s": 90}  # a dead worker's run: CRASHED 90 s after
    section["mlflow"]["auth"] = {"readers": {"viewer": "SLMOPS_STACK_MLFLOW_VIEWER_PASSWORD"}}
    with open(work / "slmops.yaml", "a", encoding="utf-8") as fh:
        fh.write("stack: " + json.dumps(section) + "\n")
    keys = {
        "SLMOPS_STACK_PG_PASSWORD": secrets.token_hex(12),
        "SLMOPS_STACK_S3_ACCESS_KEY": "slmops" + secrets.token_hex(4),
        "SLMOPS_STACK_S3_SECRET_KEY": secrets.token_hex(16),
        "SLMOPS_STACK_MLFLOW_ADMIN_PASSWORD": secrets.token_hex(12),
        "SLMOPS_STACK_MLFLOW_VIEWER_PASSWORD": secrets.token_hex(12),
        "SLMOPS_STACK_PREFECT_AUTH": "slmops:" + secrets.token_hex(12),
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


def test_up_is_idempotent_and_status_shows_every_part(stack):
    again = run(SLMOPS, "stack", "up", cwd=stack["work"], env=stack["env"], timed="stack up (already up)").stdout
    for part in ("postgres", "object store", "mlflow", "prefect"):
        assert f"{part}: already running" in again
    status = run(SLMOPS, "stack", "status", cwd=stack["work"], env=stack["env"]).stdout
    lines = {line.split()[0]: line for line in status.splitlines()}
    assert set(lines) >= {"postgres", "object", "mlflow", "prefect", "slmops-worker-1", "dvc"}, status
    assert all(" up " in line for line in lines.values()), status
    assert f"http://127.0.0.1:{stack['ports']['mlflow']}" in lines["mlflow"]
    import httpx

    ui = httpx.get(stack["endpoints"]["prefect_api"].removesuffix("/api") + "/ui-settings", timeout=60).json()
    assert ui["api_url"] == stack["endpoints"]["prefect_api"], ui  # the Prefect UI talks to this server


def test_secrets_stay_out_of_files_and_logs(stack):
    state = stack["work"] / ".slmops" / "stack"
    written = [state / "endpoints.json", *state.glob("logs/*.log"), stack["work"] / "logs" / "slmops.log"]
    written += [stack["work"] / "params.yaml", stack["work"] / ".dvc" / "config", state / "mlflow-auth.ini"]
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
    flow_runs = api(stack, "POST", "/flow_runs/filter", {})
    states = sorted(r["state_type"] for r in flow_runs)
    assert states == ["COMPLETED", "COMPLETED"], states  # demo build + pipeline, recorded by the server


def test_a_reader_browses_mlflow_but_cannot_register_move_aliases_or_delete(stack):
    import httpx

    url, name = stack["endpoints"]["mlflow"] + "/api/2.0/mlflow", "ticket-triage-slm"
    reader = ("viewer", stack["keys"]["SLMOPS_STACK_MLFLOW_VIEWER_PASSWORD"])
    with httpx.Client(auth=reader, timeout=120) as client:
        assert client.post(url + "/experiments/search", json={"max_results": 5}).status_code == 200
        found = client.get(url + "/model-versions/get", params={"name": name, "version": "1"})
        assert found.status_code == 200
        source = found.json()["model_version"]["source"]
        assert client.post(url + "/model-versions/create", json={"name": name, "source": source}).status_code == 403
        alias = {"name": name, "alias": "prod", "version": "1"}
        assert client.post(url + "/registered-models/alias", json=alias).status_code == 403
        deleted = client.request("DELETE", url + "/model-versions/delete", json={"name": name, "version": "1"})
        assert deleted.status_code == 403
    assert httpx.post(url + "/experiments/search", json={}, timeout=120).status_code == 401  # no login at all
    prefect = stack["endpoints"]["prefect_api"]
    assert httpx.post(prefect + "/flow_runs/filter", json={"limit": 1}, timeout=60).status_code == 401
    assert httpx.get(prefect + "/health", timeout=60).status_code == 200  # probes need no auth string
    assert [v["version"] for v in python(stack, VERSIONS)] == ["1"]  # nothing the reader tried happened


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


STAGES = ("prepare", "harvest", "label_traffic", "synthesize", "finetune", "quantize", "evaluate", "parity")


def test_schedule_deploys_to_the_work_pool_and_a_worker_runs_the_retrain(stack):
    # The monitor's cron is moved off the hour: at "0 * * * *" a run that crossed the hour had the worker's
    # scheduled monitor count the drift test's window before the test's own `slmops monitor` did (00:00 UTC).
    cmd = [SLMOPS, "schedule", "--profile", "smoke", "--monitor-cron", "0 4 1 1 *"]
    out = run(*cmd, cwd=stack["work"], env=stack["env"], timed="slmops schedule")
    assert "deployment slmops-retrain/weekly-retrain" in out.stdout and "on work pool 'slmops'" in out.stdout
    weekly = api(stack, "GET", "/deployments/name/slmops-retrain/weekly-retrain")
    assert weekly["work_pool_name"] == "slmops" and weekly["entrypoint"] == "slmops.flows.loop.retrain"
    assert [s["schedule"]["cron"] for s in weekly["schedules"]] == ["0 3 * * 1"]
    started = time.perf_counter()
    run_id = start_deployment(stack, "slmops-retrain/weekly-retrain")  # what the cron does on Monday at 03:00
    done = wait_final(stack, run_id)
    TIMINGS["scheduled retrain on a worker (all cached)"] = round(time.perf_counter() - started, 1)
    assert done["state_type"] == "COMPLETED", done["state"]
    assert done["work_pool_name"] == "slmops" and done["infrastructure_pid"]
    tasks = stage_task_runs(stack, run_id)  # what the Prefect UI shows under the run
    assert {*STAGES, "gate-and-register"} <= set(tasks), tasks
    assert all(state == "COMPLETED" for state in tasks.values()), tasks
    assert decisions(stack["work"])[-1]["reason"] == "started: scheduled"


def test_two_workers_pick_up_a_retrain_at_once_one_runs_the_other_is_suppressed(stack):
    before = len(decisions(stack["work"]))
    # Both runs are scheduled for one time a poll away, so a worker's query sees both at once and their processes
    # start together. Started now, a worker could poll between the two creations and take the second run a poll
    # (10 s) later, after the first, all cached, had ended: both then rightly started (CI, 2026-12-06).
    at = datetime.now(UTC) + timedelta(seconds=12)
    runs = [start_deployment(stack, "slmops-retrain/weekly-retrain", at=at) for _ in range(2)]
    assert [wait_final(stack, r)["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"]
    new = decisions(stack["work"])[before:]
    assert sorted(d["start"] for d in new) == [False, True], new
    assert "another retrain is running" in next(d["reason"] for d in new if not d["start"])


def test_the_team_lock_on_postgres_suppresses_a_retrain_started_from_another_machine(stack, monkeypatch):
    """This test process holds the lock as a worker on another machine would: it shares no file with the worker,
    only the stack's PostgreSQL."""
    from slmops.config import load_params
    from slmops.stack.lock import team_retrain_lock

    params = load_params("smoke", project=stack["work"])
    monkeypatch.setenv("SLMOPS_STACK_PG_PASSWORD", stack["keys"]["SLMOPS_STACK_PG_PASSWORD"])
    with team_retrain_lock(params.stack, params.model_name):
        done = wait_final(stack, start_deployment(stack, "slmops-retrain/weekly-retrain"))
    assert done["state_type"] == "COMPLETED"
    last = decisions(stack["work"])[-1]
    assert not last["start"] and "holds the team's lock on the stack's PostgreSQL" in last["reason"], last


def test_serve_prod_loads_the_model_from_the_stacks_registry(stack):
    version = python(
        stack,
        "import json, mlflow; c = mlflow.MlflowClient(); v = c.get_model_version_by_alias('ticket-triage-slm', 'poc')"
        ".version; c.set_registered_model_alias('ticket-triage-slm', 'prod', v); print(json.dumps(v))",
    )
    port, started = free_port(), time.perf_counter()
    cmd = [SLMOPS, "serve", "--alias", "prod", "--port", str(port), "--no-fallback", "--profile", "smoke"]
    server = subprocess.Popen(cmd, cwd=stack["work"], env=stack["env"], stdout=subprocess.PIPE, text=True)
    try:
        import httpx

        url = f"http://127.0.0.1:{port}"
        while time.perf_counter() - started < 120 and server.poll() is None:
            try:
                health = httpx.get(url + "/health", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        TIMINGS["serve --alias prod: ready"] = round(time.perf_counter() - started, 1)
        assert str(health["version"]) == version
        body = {"model": "ticket-triage-slm", "messages": [{"role": "user", "content": "ログインできません"}]}
        answer = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
        assert answer.status_code == 200 and answer.headers["x-slmops-model-version"] == version
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert f"serving ticket-triage-slm (version {version})" in out


def test_drift_starts_the_retrain_on_a_worker_a_killed_run_crashes_the_next_resumes(stack):
    """`slmops monitor` on drift starts the drift-retrain deployment and a worker runs it; SIGKILL of its process
    mid-finetune -> CRASHED; the next run resumes from the stage cache and the training checkpoint while the MLflow
    server restarts under it; no version is half-registered or registered twice."""
    from slmops.config import Layout
    from slmops.stack import procs

    work, env = stack["work"], stack["env"]
    sets = [*LOOP, "finetune.resume=true", "finetune.training.save_steps=5", "finetune.training.epochs=6"]
    sets.append(f"gates={toy_gates(stack['parent'])}")
    known = {v["sha256"] for v in python(stack, VERSIONS)}
    poc_before = python(stack, POC_VERSION)["version"]
    log_shifted_traffic(work, seed=503, n=40)
    out = run(SLMOPS, "monitor", "--profile", "smoke", *[a for s in sets for a in ("--set", s)], cwd=work, env=env)
    assert "retrain STARTED" in out.stdout, out.stdout
    run_id = re.search(r"drift-retrain scheduled: flow run \S+ \(([0-9a-f-]+)\)", out.stdout).group(1)
    checkpoints = work / "models" / "student" / "checkpoints"
    killed_at = wait_for_checkpoint(checkpoints, after=0)
    pid = int(api(stack, "GET", f"/flow_runs/{run_id}")["infrastructure_pid"])
    os.kill(pid, signal.SIGKILL)  # the worker's flow-run process, mid-finetune
    crashed = wait_final(stack, run_id, timeout=120)
    assert crashed["state_type"] == "CRASHED" and "SIGKILL" in crashed["state"]["message"], crashed["state"]
    synthesized = (work / "data" / "synthetic" / "manifest.json").stat().st_mtime_ns
    started = time.perf_counter()
    next_id = start_deployment(stack, "slmops-retrain/drift-retrain", crashed["parameters"])
    wait_for_checkpoint(checkpoints, after=killed_at)  # training again, from the checkpoint on
    assert procs.stop("mlflow", Layout(root=work))
    restarted = run(SLMOPS, "stack", "up", cwd=work, env=env, timed="stack up (restart MLflow mid-run)")
    assert "mlflow: starting" in restarted.stdout
    done = wait_final(stack, next_id)
    TIMINGS["resumed retrain on a worker"] = round(time.perf_counter() - started, 1)
    assert done["state_type"] == "COMPLETED", done["state"]
    assert json.loads((work / "models" / "student" / "manifest.json").read_text())["resumed_from_step"] >= killed_at
    assert (work / "data" / "synthetic" / "manifest.json").stat().st_mtime_ns == synthesized  # cached, not rerun
    versions = python(stack, VERSIONS)
    assert all(v["status"] == "READY" and v["sha256"] for v in versions), versions  # nothing half-registered
    new = [v["sha256"] for v in versions if v["sha256"] not in known]
    assert len(new) == len(set(new)) <= 1, versions  # at most the one challenger that won, once
    # What `slmops loop demo` reads once a worker's retrain ends: the run's state and the poc alias it left.
    seen = python(stack, AWAIT_RETRAIN.replace("RUN_ID", next_id).replace("BEFORE", poc_before))
    assert seen["state"] == "Completed" and (seen["version"] is not None) == bool(new), (seen, versions)


def test_a_worker_killed_with_its_run_the_silent_run_is_crashed_and_the_next_resumes(stack):
    """The machine dies: the workers and the flow run they started are SIGKILLed together, so nobody reports the
    run. Its heartbeats stop; the stack's automation marks it CRASHED; `stack up` restarts the workers; the next
    run resumes from the training checkpoint and completes."""
    from slmops.config import Layout, load_params
    from slmops.stack import procs, servers

    work, env = stack["work"], stack["env"]
    cfg, layout = load_params("smoke", project=work).stack, Layout(root=work)
    sets = [*LOOP, "finetune.resume=true", "finetune.training.save_steps=5", "finetune.training.epochs=6"]
    sets.append(f"gates={toy_gates(stack['parent'])}")
    log_shifted_traffic(work, seed=504, n=40)
    parameters = {"profile": "smoke", "work_dir": str(work), "reason": "drift", "overrides": sets}
    run_id = start_deployment(stack, "slmops-retrain/drift-retrain", parameters)
    checkpoints = work / "models" / "student" / "checkpoints"
    killed_at = wait_for_checkpoint(checkpoints, after=0)
    workers = [procs.running_pid(servers.worker_name(cfg, i), layout) for i in range(1, cfg.prefect.workers + 1)]
    for pid in [*workers, int(api(stack, "GET", f"/flow_runs/{run_id}")["infrastructure_pid"])]:
        os.kill(pid, signal.SIGKILL)  # no worker is left to report the run
    started = time.perf_counter()
    crashed = wait_final(stack, run_id, timeout=cfg.prefect.zombie_after_s + 240)
    TIMINGS["a dead worker's run marked CRASHED"] = round(time.perf_counter() - started, 1)
    assert crashed["state_type"] == "CRASHED" and "no heartbeat for 90 s" in crashed["state"]["message"], crashed
    restarted = run(SLMOPS, "stack", "up", cwd=work, env=env, timed="stack up (restart the workers)")
    assert "prefect: starting worker(s)" in restarted.stdout, restarted.stdout
    done = wait_final(stack, start_deployment(stack, "slmops-retrain/drift-retrain", parameters))
    assert done["state_type"] == "COMPLETED", done["state"]
    assert json.loads((work / "models" / "student" / "manifest.json").read_text())["resumed_from_step"] >= killed_at


def wait_for_checkpoint(folder: Path, after: int, timeout: float = 600) -> int:
    """The step of the first ``checkpoint-<step>`` past ``after`` in ``folder`` (polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*")] if folder.is_dir() else []
        if [s for s in steps if s > after]:
            return min(s for s in steps if s > after)
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint past step {after} in {folder} after {timeout:.0f} s")


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
