"""The one file ``slmops stack up`` writes (``.slmops/stack/endpoints.json``) and every other command reads, so
``slmops run``, ``schedule``, ``monitor`` and ``serve`` run against the stack unchanged.

Usage:
    use_stack(params.stack, root)     # in a project with a `stack:` section: MLFLOW_TRACKING_URI, PREFECT_API_URL ...

It holds URLs only, never a secret. A variable already set in the environment wins, as everywhere in slmops.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from slmops.config.layout import Layout
from slmops.config.stack import StackConfig
from slmops.io import atomic_write_text


class StackNotUp(RuntimeError):
    """The project declares a stack, but ``slmops stack up`` has not written its endpoints."""


class Endpoints(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    mlflow: str  # the tracking server (MLFLOW_TRACKING_URI)
    prefect_api: str  # PREFECT_API_URL
    prefect_ui: str
    work_pool: str
    s3: str  # the object store's S3 endpoint
    bucket: str
    mlflow_artifacts: str  # where the tracking server puts artifacts (s3://...)
    dvc_remote: str  # the project's DVC remote (s3://...)
    postgres: str  # postgresql://user@host:port (no password)

    def client_env(self) -> dict[str, str]:
        """What a client process (a CLI command, a worker's flow run) needs to use the stack."""
        return {"MLFLOW_TRACKING_URI": self.mlflow, "PREFECT_API_URL": self.prefect_api}


def write_endpoints(layout: Layout, endpoints: Endpoints) -> Path:
    atomic_write_text(layout.stack_endpoints, endpoints.model_dump_json(indent=2) + "\n")
    return layout.stack_endpoints


def read_endpoints(layout: Layout) -> Endpoints | None:
    path = layout.stack_endpoints
    return Endpoints.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else None


def s3_client_env(cfg: StackConfig) -> dict[str, str]:
    """The store's keys as DVC's S3 client reads them, when the stack's variables are set."""
    names = {
        "AWS_ACCESS_KEY_ID": cfg.object_store.access_key_env,
        "AWS_SECRET_ACCESS_KEY": cfg.object_store.secret_key_env,
    }
    return {aws: os.environ[ours] for aws, ours in names.items() if os.environ.get(ours)}


def use_stack(cfg: StackConfig, root: Path) -> Endpoints | None:
    """Point this process (and what it starts) at the stack ``slmops stack up`` started for the project at ``root``.

    Without the endpoints file, servers named in the environment (``MLFLOW_TRACKING_URI`` and ``PREFECT_API_URL``,
    e.g. a teammate's clone pointed at the team's stack) are used as they are; with neither, ``StackNotUp``.
    """
    layout = Layout(root=root.resolve())
    endpoints = read_endpoints(layout)
    if endpoints is None:
        if all(os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")):
            env = {}
        else:
            raise StackNotUp(
                f"{root}: slmops.yaml has a `stack:` section but the stack is not up ({layout.stack_endpoints} "
                "is missing): run `slmops stack up` (or set MLFLOW_TRACKING_URI and PREFECT_API_URL to the team's "
                "servers), or remove the section to use the embedded defaults"
            )
    else:
        env = endpoints.client_env()
    from slmops.stack.access import client_env

    for key, value in (env | s3_client_env(cfg) | client_env(cfg)).items():
        os.environ.setdefault(key, value)
    return endpoints
