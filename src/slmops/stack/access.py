"""Who may use the stack's servers: MLflow's basic-auth app (an admin and read-only users) and the Prefect
server's auth string. Every password comes from an environment variable the config names.

Usage:
    args, env = mlflow_auth(cfg, layout)        # `mlflow server` arguments and environment (auth on)
    ensure_readers(cfg)                         # the read-only users, created by the admin (after the server is up)
    client_env(cfg)                             # MLFLOW_TRACKING_USERNAME/PASSWORD, PREFECT_API_AUTH_STRING
    httpx.get(url, headers=prefect_headers(cfg))

MLflow's auth app gives every user ``default_permission = READ`` on what they did not create: a reader can
browse every experiment, run and model, and gets 403 on a new version, an alias or a delete of the admin's
registered model. The auth app's own database is on the stack's PostgreSQL; its config file holds no secret
(the admin's password reaches the server as ``MLFLOW_AUTH_ADMIN_PASSWORD``, PostgreSQL's as ``PGPASSWORD``).
"""

from __future__ import annotations

import base64
import os
import secrets as token

from slmops.config.layout import Layout
from slmops.config.stack import StackConfig
from slmops.stack import postgres
from slmops.stack.procs import StackError


def _from_env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise StackError(f"{name} not set: {what} comes only from the environment (export {name}=...)")
    return value


def mlflow_auth(cfg: StackConfig, layout: Layout) -> tuple[list[str], dict[str, str]]:
    """``mlflow server`` arguments and environment for the basic-auth app; nothing when auth is off."""
    auth = cfg.mlflow.auth
    if auth is None:
        return [], {}
    database = postgres.url(cfg.postgres, cfg.host, auth.database)
    ini = layout.stack_dir / "mlflow-auth.ini"
    ini.write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {database}\nadmin_username = {auth.admin_user}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # A checked password is cached for 60 s: PBKDF2 on every request costs a loaded server seconds. One server
        # process, so a password changed through the API takes effect at once.
        "auth_cache_ttl_seconds = 60\n",
        encoding="utf-8",
    )
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": _from_env(auth.admin_password_env, "MLflow's admin password"),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": token.token_hex(16),  # signs the UI's CSRF tokens; new each start
    }
    return ["--app-name", "basic-auth"], env


def client_env(cfg: StackConfig) -> dict[str, str]:
    """The credentials a client (a CLI command, a worker's flow run) uses, from the variables that are set."""
    env = {}
    auth = cfg.mlflow.auth
    if auth is not None and os.environ.get(auth.admin_password_env):
        env |= {"MLFLOW_TRACKING_USERNAME": auth.admin_user}
        env |= {"MLFLOW_TRACKING_PASSWORD": os.environ[auth.admin_password_env]}
    name = cfg.prefect.auth_string_env
    if name and os.environ.get(name):
        env["PREFECT_API_AUTH_STRING"] = os.environ[name]
    return env


def prefect_server_env(cfg: StackConfig) -> dict[str, str]:
    name = cfg.prefect.auth_string_env
    if name is None:
        return {}
    return {"PREFECT_SERVER_API_AUTH_STRING": _from_env(name, "the Prefect server's auth string")}


def prefect_headers(cfg: StackConfig) -> dict[str, str]:
    """What an HTTP call to the Prefect API sends: basic auth with the auth string, when there is one."""
    name = cfg.prefect.auth_string_env
    if not (name and os.environ.get(name)):
        return {}
    return {"Authorization": "Basic " + base64.b64encode(os.environ[name].encode()).decode()}


def ensure_readers(cfg: StackConfig, mlflow_url: str) -> list[str]:
    """Create the read-only users that do not exist yet (as the admin); their names."""
    import httpx

    auth = cfg.mlflow.auth
    if auth is None:
        return []
    admin = (auth.admin_user, _from_env(auth.admin_password_env, "MLflow's admin password"))
    created = []
    for user, password_env in auth.readers.items():
        password = _from_env(password_env, f"MLflow user {user!r}'s password")
        found = httpx.get(f"{mlflow_url}/api/2.0/mlflow/users/get", params={"username": user}, auth=admin, timeout=30)
        if found.status_code == 200:
            continue
        body = {"username": user, "password": password}
        response = httpx.post(f"{mlflow_url}/api/2.0/mlflow/users/create", json=body, auth=admin, timeout=30)
        if response.status_code != 200:
            raise StackError(f"creating MLflow user {user!r}: HTTP {response.status_code} {response.text[:300]}")
        created.append(user)
    return created
