"""The stack's MLflow tracking server and Prefect server (both on the stack's PostgreSQL), the process work pool
and its workers.

Usage:
    start_mlflow(cfg, layout, secrets); start_prefect(cfg, layout, secrets)
    wait_mlflow(cfg, layout); wait_prefect(cfg, layout)
    ensure_work_pool(cfg); start_workers(cfg, layout, client_env)

MLflow stores runs and the registry in PostgreSQL and proxies artifacts to ``s3://<bucket>/<prefix>``
(``--serve-artifacts``): clients need only the tracking URI, never the store's keys.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from slmops.config.layout import Layout
from slmops.config.stack import StackConfig
from slmops.stack import access, objectstore, postgres, procs
from slmops.stack.secrets import Secrets

MLFLOW, PREFECT = "mlflow", "prefect"


def _script(name: str) -> str:
    """A console script of the running environment (``mlflow``, ``prefect``)."""
    return str(Path(sys.executable).with_name(name))


def mlflow_url(cfg: StackConfig) -> str:
    return f"http://{cfg.host}:{cfg.mlflow.port}"


def prefect_url(cfg: StackConfig) -> str:
    return f"http://{cfg.host}:{cfg.prefect.port}"


def worker_name(cfg: StackConfig, index: int) -> str:
    return f"{cfg.prefect.work_pool}-worker-{index}"


def start_mlflow(cfg: StackConfig, layout: Layout, secrets: Secrets) -> None:
    store = postgres.url(cfg.postgres, cfg.host, cfg.mlflow.database)
    artifacts = f"s3://{cfg.object_store.bucket}/{cfg.mlflow.artifacts_prefix}"
    cmd = [_script("mlflow"), "server", "--host", cfg.host, "--port", str(cfg.mlflow.port)]
    cmd += ["--workers", str(cfg.mlflow.workers), "--backend-store-uri", store]
    cmd += ["--artifacts-destination", artifacts, "--serve-artifacts"]
    auth_args, auth_env = access.mlflow_auth(cfg, layout)  # basic-auth app, when `mlflow.auth` is set
    cmd += auth_args
    env = {**os.environ, **secrets.pg_env(), **secrets.s3_env(), **auth_env}
    env |= {
        "MLFLOW_S3_ENDPOINT_URL": objectstore.endpoint(cfg.object_store, cfg.host),
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    procs.start(MLFLOW, cmd, env=env, layout=layout)


def mlflow_ready(cfg: StackConfig) -> bool:
    return procs.http_ok(mlflow_url(cfg) + "/health")


def prefect_env(cfg: StackConfig, layout: Layout) -> dict[str, str]:
    """What every Prefect process of the stack shares: its own home, no analytics."""
    home = layout.stack_prefect_home
    home.mkdir(parents=True, exist_ok=True)
    return {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def start_prefect(cfg: StackConfig, layout: Layout, secrets: Secrets) -> None:
    database = postgres.url(cfg.postgres, cfg.host, cfg.prefect.database, driver="postgresql+asyncpg")
    env = {**os.environ, **prefect_env(cfg, layout), **secrets.pg_env()}
    env |= {"PREFECT_SERVER_DATABASE_CONNECTION_URL": database, "PREFECT_SERVER_LOGGING_LEVEL": "WARNING"}
    # The UI asks the API at this URL; `--port` alone leaves it at Prefect's default port, and the UI is broken.
    env["PREFECT_SERVER_UI_API_URL"] = prefect_url(cfg) + "/api"
    env |= access.prefect_server_env(cfg)
    env.pop("PREFECT_API_URL", None)
    cmd = [_script("prefect"), "server", "start", "--host", cfg.host, "--port", str(cfg.prefect.port)]
    procs.start(PREFECT, cmd, env=env, layout=layout)


def prefect_ready(cfg: StackConfig) -> bool:
    return procs.http_ok(prefect_url(cfg) + "/api/health")


def ensure_work_pool(cfg: StackConfig) -> bool:
    """Create the process work pool unless it exists; True when it created it."""
    import httpx

    body = {"name": cfg.prefect.work_pool, "type": "process"}
    response = httpx.post(
        prefect_url(cfg) + "/api/work_pools/", json=body, headers=access.prefect_headers(cfg), timeout=30
    )
    if response.status_code not in (201, 409):
        raise procs.StackError(f"creating work pool {cfg.prefect.work_pool!r}: HTTP {response.status_code}")
    return response.status_code == 201


def start_workers(cfg: StackConfig, layout: Layout, client_env: dict[str, str]) -> list[str]:
    """Start the workers that are not running; returns the names it started."""
    started = []
    for index in range(1, cfg.prefect.workers + 1):
        name = worker_name(cfg, index)
        if procs.running_pid(name, layout) is not None:
            continue
        cmd = [_script("prefect"), "worker", "start", "--pool", cfg.prefect.work_pool, "--type", "process"]
        cmd += ["--name", name, "--install-policy", "never", "--no-create-pool-if-not-found"]
        env = {**os.environ, **prefect_env(cfg, layout), **client_env}
        procs.start(name, cmd, env=env, layout=layout)
        started.append(name)
    return started


def online_workers(cfg: StackConfig) -> list[str]:
    """Names of the pool's workers the server sees as ONLINE (heartbeat within its timeout)."""
    import httpx

    try:
        url = f"{prefect_url(cfg)}/api/work_pools/{cfg.prefect.work_pool}/workers/filter"
        response = httpx.post(url, headers=access.prefect_headers(cfg), timeout=10)
    except httpx.HTTPError:
        return []
    if response.status_code != 200:
        return []
    return sorted(w["name"] for w in response.json() if w.get("status") == "ONLINE")
