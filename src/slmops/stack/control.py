"""``slmops stack up | down | status``: start the team's stack in order, each part idempotently, waiting for its
health; stop what ``up`` started (the data stays); show each part with its URL.

Usage:
    endpoints = up(params.stack, root, echo=print)
    for part in status(params.stack, root): print(part.line())
    down(params.stack, root, echo=print)

Order: PostgreSQL -> object store -> (databases, bucket) -> MLflow and Prefect servers (started together,
waited together) -> work pool -> workers -> the project's DVC remote -> endpoints.json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slmops.config.layout import Layout
from slmops.config.stack import StackConfig
from slmops.stack import access, objectstore, postgres, procs, servers, zombies
from slmops.stack.endpoints import Endpoints, write_endpoints
from slmops.stack.secrets import Secrets

DVC_REMOTE = "stack"
Echo = Callable[[str], None]


@dataclass(frozen=True)
class Part:
    name: str
    url: str
    healthy: bool
    detail: str = ""

    def line(self) -> str:
        return f"{self.name:<18} {'up' if self.healthy else 'DOWN':<5} {self.url:<34} {self.detail}".rstrip()


def endpoints_of(cfg: StackConfig) -> Endpoints:
    bucket = cfg.object_store.bucket
    return Endpoints(
        mlflow=servers.mlflow_url(cfg),
        prefect_api=servers.prefect_url(cfg) + "/api",
        prefect_ui=servers.prefect_url(cfg),
        work_pool=cfg.prefect.work_pool,
        s3=objectstore.endpoint(cfg.object_store, cfg.host),
        bucket=bucket,
        mlflow_artifacts=f"s3://{bucket}/{cfg.mlflow.artifacts_prefix}",
        dvc_remote=f"s3://{bucket}/{cfg.dvc_prefix}",
        postgres=postgres.url(cfg.postgres, cfg.host, "").rstrip("/"),
    )


def _port_free_or_fail(name: str, host: str, port: int) -> None:
    if procs.port_open(host, port):
        raise procs.StackError(f"{name}: {host}:{port} is taken by a process this stack did not start; change its port")


def _postgres_up(cfg: StackConfig, layout: Layout, secrets: Secrets, echo: Echo) -> None:
    pg = cfg.postgres
    if postgres.running(pg, layout):
        echo(f"postgres: already running on {cfg.host}:{pg.port}")
    else:
        if postgres.init_cluster(pg, layout, secrets):
            echo(f"postgres: initialised {layout.stack_postgres}")
        _port_free_or_fail("postgres", cfg.host, pg.port)
        postgres.start(pg, cfg.host, layout, cfg.startup_timeout_s)
        echo(f"postgres: started on {cfg.host}:{pg.port}")
    databases = [cfg.mlflow.database, cfg.prefect.database]
    databases += [cfg.mlflow.auth.database] if cfg.mlflow.auth else []
    created = postgres.ensure_databases(pg, cfg.host, secrets, databases)
    if created:
        echo(f"postgres: created database(s) {', '.join(created)}")


def _object_store_up(cfg: StackConfig, layout: Layout, secrets: Secrets, echo: Echo) -> None:
    store = cfg.object_store
    if procs.running_pid(objectstore.NAME, layout) is not None:
        echo(f"object store: already running on {objectstore.endpoint(store, cfg.host)}")
        return
    _port_free_or_fail("object store", cfg.host, store.port)
    objectstore.start(store, cfg.host, layout, secrets, cfg.startup_timeout_s)
    echo(f"object store: SeaweedFS S3 on {objectstore.endpoint(store, cfg.host)}, bucket {store.bucket}")


def _servers_up(cfg: StackConfig, layout: Layout, secrets: Secrets, echo: Echo) -> None:
    """Start whichever of the two servers is not running, then wait for both (their start-ups overlap)."""
    table = [
        (servers.MLFLOW, cfg.mlflow.port, servers.start_mlflow, lambda: servers.mlflow_ready(cfg)),
        (servers.PREFECT, cfg.prefect.port, servers.start_prefect, lambda: servers.prefect_ready(cfg)),
    ]
    for name, port, start, _ in table:
        if procs.running_pid(name, layout) is None:
            _port_free_or_fail(name, cfg.host, port)
            start(cfg, layout, secrets)
            echo(f"{name}: starting on {cfg.host}:{port}")
        else:
            echo(f"{name}: already running on {cfg.host}:{port}")
    for name, _, _, ready in table:
        procs.wait_healthy(name, ready, layout, cfg.startup_timeout_s, name)


def _workers_up(cfg: StackConfig, layout: Layout, endpoints: Endpoints, secrets: Secrets, echo: Echo) -> None:
    if servers.ensure_work_pool(cfg):
        echo(f"prefect: created process work pool {cfg.prefect.work_pool!r}")
    if zombies.ensure_zombie_automation(cfg):
        echo(f"prefect: runs silent for {cfg.prefect.zombie_after_s} s are marked CRASHED (automation)")
    env = endpoints.client_env() | secrets.s3_env() | access.client_env(cfg) | zombies.heartbeat_env(cfg)
    started = servers.start_workers(cfg, layout, env)
    if started:
        echo(f"prefect: starting worker(s) {', '.join(started)}")
    wanted = {servers.worker_name(cfg, i) for i in range(1, cfg.prefect.workers + 1)}
    procs.wait_healthy(
        f"{len(wanted)} worker(s) of pool {cfg.prefect.work_pool!r}",
        lambda: wanted <= set(servers.online_workers(cfg)),
        layout,
        cfg.startup_timeout_s,
    )


def configure_dvc_remote(root: Path, endpoints: Endpoints) -> bool:
    """Make the stack's bucket the project's default DVC remote (in .dvc/config, which git shares; no keys)."""
    if not (root / ".dvc").is_dir():
        return False
    from dvc.repo import Repo

    with Repo(str(root)) as repo, repo.config.edit("repo") as conf:
        conf["remote"][DVC_REMOTE] = {"url": endpoints.dvc_remote, "endpointurl": endpoints.s3, "region": "us-east-1"}
        conf["core"]["remote"] = DVC_REMOTE
    return True


def up(cfg: StackConfig, root: Path, echo: Echo = print) -> Endpoints:
    """Start every part that is not running and wait for its health; write the endpoints file last."""
    layout, secrets = Layout(root=root.resolve()), Secrets.from_env(cfg)
    layout.stack_dir.mkdir(parents=True, exist_ok=True)
    _postgres_up(cfg, layout, secrets, echo)
    _object_store_up(cfg, layout, secrets, echo)
    _servers_up(cfg, layout, secrets, echo)
    readers = access.ensure_readers(cfg, servers.mlflow_url(cfg))
    if readers:
        echo(f"mlflow: created read-only user(s) {', '.join(readers)}")
    endpoints = endpoints_of(cfg)
    _workers_up(cfg, layout, endpoints, secrets, echo)
    if configure_dvc_remote(layout.root, endpoints):
        echo(f"dvc: default remote {DVC_REMOTE!r} -> {endpoints.dvc_remote}")
    echo(f"endpoints: {write_endpoints(layout, endpoints)}")
    return endpoints


def _process_names(cfg: StackConfig, layout: Layout) -> list[str]:
    """Workers (any this stack started, also beyond today's count), then the servers, in stopping order."""
    workers = sorted(p.stem for p in layout.stack_pids.glob(f"{cfg.prefect.work_pool}-worker-*.json"))
    return [*workers, servers.PREFECT, servers.MLFLOW, objectstore.NAME]


def down(cfg: StackConfig, root: Path, echo: Echo = print) -> None:
    """Stop what ``up`` started, workers first and PostgreSQL last; every part's data stays."""
    layout = Layout(root=root.resolve())
    layout.stack_endpoints.unlink(missing_ok=True)  # from now on, commands say the stack is not up
    for name in _process_names(cfg, layout):
        if procs.stop(name, layout):
            echo(f"{name}: stopped")
    if postgres.stop(cfg.postgres, layout):
        echo("postgres: stopped")
    echo(f"data kept in {layout.stack_dir}")


def status(cfg: StackConfig, root: Path) -> list[Part]:
    """Each part, its URL and whether it answers now (needs no secret)."""
    layout, ep = Layout(root=root.resolve()), endpoints_of(cfg)
    online = set(servers.online_workers(cfg))
    parts = [
        Part("postgres", ep.postgres, postgres.ready(cfg.postgres, cfg.host), f"databases {cfg.mlflow.database}, "
             f"{cfg.prefect.database}"),
        Part("object store", ep.s3, objectstore.ready(cfg.object_store, cfg.host), f"bucket {ep.bucket}"),
        Part("mlflow", ep.mlflow, servers.mlflow_ready(cfg), f"artifacts {ep.mlflow_artifacts}"),
        Part("prefect", ep.prefect_ui, servers.prefect_ready(cfg), f"work pool {ep.work_pool}"),
    ]  # fmt: skip
    for i in range(1, cfg.prefect.workers + 1):
        name = servers.worker_name(cfg, i)
        alive = procs.running_pid(name, layout) is not None
        parts.append(Part(name, ep.prefect_ui, alive and name in online, "" if alive else "no process"))
    parts.append(Part("dvc remote", ep.dvc_remote, parts[1].healthy, f"endpoint {ep.s3}"))
    return parts
