"""Helpers for the stack tests (tests/test_stack.py): free ports, commands as a client of the stack, the bucket's
keys, the Prefect API.

Usage:
    from tests.stackkit import SLMOPS, run, python, prefect_api
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

SLMOPS = str(Path(sys.executable).with_name("slmops"))
DVC = str(Path(sys.executable).with_name("dvc"))
# Set by other fixtures or the user's shell: they would point this module's commands away from its stack.
FOREIGN = (
    "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "SLMOPS_PROFILE", "SLMOPS_PROJECT", "AWS_ACCESS_KEY_ID",
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING",
)  # fmt: skip
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


def client_env(stack) -> dict[str, str]:
    """A client of the stack: the servers' URLs, as `slmops stack up` wrote them."""
    ep, keys = stack["endpoints"], stack["keys"]
    return stack["env"] | {
        "MLFLOW_TRACKING_URI": ep["mlflow"], "PREFECT_API_URL": ep["prefect_api"],
        "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": keys["SLMOPS_STACK_MLFLOW_ADMIN_PASSWORD"],
        "PREFECT_API_AUTH_STRING": keys["SLMOPS_STACK_PREFECT_AUTH"],
    }  # fmt: skip


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


def api(stack, method: str, path: str, body: dict | None = None):
    """The stack's Prefect REST API, as this test process (no client settings to leak into other tests)."""
    import httpx

    auth = tuple(stack["keys"]["SLMOPS_STACK_PREFECT_AUTH"].split(":", 1))
    response = httpx.request(method, stack["endpoints"]["prefect_api"] + path, json=body, auth=auth, timeout=60)
    response.raise_for_status()
    return response.json()


def start_deployment(stack, name: str, parameters: dict | None = None, at: datetime | None = None) -> str:
    """A flow run of deployment ``flow/deployment`` (what a schedule or ``run_deployment`` creates); its id.
    ``at``: scheduled for then instead of now (a worker sees a run ``prefetch_seconds`` before its time)."""
    deployment = api(stack, "GET", f"/deployments/name/{name}")
    body: dict = {"parameters": parameters or {}}
    if at is not None:
        body["state"] = {"type": "SCHEDULED", "state_details": {"scheduled_time": at.isoformat()}}
    created = api(stack, "POST", f"/deployments/{deployment['id']}/create_flow_run", body)
    return created["id"]


def wait_final(stack, run_id: str, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = api(stack, "GET", f"/flow_runs/{run_id}")
        if found["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return found
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} not finished after {timeout:.0f} s: {found['state_type']}")


def stage_task_runs(stack, run_id: str) -> dict[str, str]:
    """``{task name without Prefect's suffix: state}`` over the flow run and its subflows (the pipeline)."""
    runs = [run_id] + [r["id"] for r in api(stack, "POST", "/flow_runs/filter", {
        "flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}})]  # fmt: skip
    found = api(stack, "POST", "/task_runs/filter", {"task_runs": {"flow_run_id": {"any_": runs}}, "limit": 200})
    return {t["name"].rsplit("-", 1)[0]: t["state_type"] for t in found}


def run_logs(stack, run_id: str) -> list[str]:
    found = api(stack, "POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})
    return [row["message"] for row in found]


def decisions(work: Path) -> list[dict]:
    """The retrain trigger's decisions, oldest first (``.slmops/trigger.jsonl``)."""
    path = work / ".slmops" / "trigger.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# The loop's knobs at the smoke profile's size (as tests/test_loop_e2e.py sets them), one drifted window enough.
LOOP = [
    "monitor.window=40", "monitor.min_rows=20", "loop.trigger.consecutive_windows=1", "loop.trigger.min_new_rows=20",
    "loop.recent_eval_rows=15", "loop.compare.min_samples=10", "loop.traffic_repeat=1",
    "loop.trigger.cooldown_hours=0",  # the scheduled retrains before it started the cooldown
]  # fmt: skip
VERSIONS = """
import json, mlflow
found = mlflow.MlflowClient().search_model_versions("name='ticket-triage-slm'")
print(json.dumps([{"version": v.version, "status": v.status, "sha256": v.tags.get("sha256")} for v in found]))
"""


POC_VERSION = """
import json
from slmops.registry.aliases import alias_version
print(json.dumps({"version": alias_version("ticket-triage-slm", "poc")}))
"""

AWAIT_RETRAIN = """
import json
from pathlib import Path
from slmops.config import load_params
from slmops.flows.loop_demo import await_deployment_run
from slmops.flows.stages import Ctx
ctx = Ctx(load_params("smoke", project=Path(".")), Path(".").resolve())
out = await_deployment_run(ctx, {"flow_run_id": "RUN_ID"}, "BEFORE")
print(json.dumps({"state": out["state"], "version": out["gate"]["version"], "challenge": out["gate"]["challenge"]}))
"""


def toy_gates(folder: Path) -> Path:
    """The example's gates with no poc floor and parity agreement at 0.75 (as tests/test_loop_e2e.py uses them):
    a 64-wide smoke model's retrain has to get as far as a challenge."""
    import yaml

    from slmops.config import load_gates
    from tests.projects import TRIAGE_GATES

    gates = load_gates(TRIAGE_GATES).model_dump()
    gates["poc"]["min"] = dict.fromkeys(gates["poc"]["min"], 0.0)
    gates["parity"] |= {"min_output_agreement": 0.75, "min_label_agreement": 0.75}
    path = folder / "gates.yaml"
    path.write_text(yaml.safe_dump(gates))
    return path


def log_shifted_traffic(work: Path, seed: int, n: int) -> None:
    """``n`` rows as the server logs them, of a product line the model never saw, every one answered by the
    teacher fallback: drift is certain."""
    import uuid
    from datetime import UTC, datetime

    from slmops.demo.generate import generate
    from slmops.demo.teacher import answer
    from slmops.serve.inference_log import InferenceLog
    from slmops.text import pii

    log = InferenceLog(work / "logs" / "inference.jsonl", fsync=False)
    for row in generate(seed, 0, 0, n, phrasing_share=0.5, shifted=True)["test"]:
        text = pii.mask(row["input"])
        log.append({
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "model": "smoke", "model_version": "1", "status": 200, "served_by": "teacher",
            "fallback": "invalid_output", "input": text, "output": answer([{"role": "user", "content": text}]),
            "min_token_prob": 0.2,
        })  # fmt: skip
