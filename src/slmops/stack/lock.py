"""The retrain lock across machines: a PostgreSQL advisory lock on the stack's server.

Usage:
    with team_retrain_lock(params.stack, params.model_name):   # RetrainRunning when another process holds it
        ...                                                      # the retrain

``slmops.loop.trigger.retrain_lock`` (``flock`` on a file in the work dir) only orders processes that share that
file system: two workers on two machines each lock their own file and both retrain. The stack's PostgreSQL is
the one place every worker reaches, so the lock is held there too: a session-level advisory lock
(``pg_try_advisory_lock``) on a key made from the registered model's name (not a path, which differs between
machines). The connection holds it: it is released when the retrain ends or when its process dies (the server
drops the session), so a killed worker never leaves it held. Without a ``stack:`` section there is no lock here.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from slmops.config.stack import StackConfig
from slmops.loop.trigger import RetrainRunning
from slmops.stack.procs import StackError

APP_NAME = "slmops-retrain"  # application_name of the lock's session: how the holder is found and named
DATABASE = "postgres"  # advisory locks are per database: every client must use the same one


def lock_key(model_name: str) -> str:
    return f"{APP_NAME}:{model_name}"


def _connect(cfg: StackConfig):
    import psycopg2

    password = os.environ.get(cfg.postgres.password_env)
    if not password:
        raise StackError(
            f"{cfg.postgres.password_env} not set: the retrain lock is held on the stack's PostgreSQL (the "
            "password comes only from the environment)"
        )
    who = f"{APP_NAME} {socket.gethostname()}:{os.getpid()}"
    return psycopg2.connect(
        host=cfg.host, port=cfg.postgres.port, user=cfg.postgres.user, password=password, dbname=DATABASE,
        connect_timeout=10, application_name=who[:63],
    )  # fmt: skip


def _holders(cur) -> str:
    cur.execute(
        "SELECT a.application_name, a.backend_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND a.pid <> pg_backend_pid()"
    )
    found = [f"{name} since {start:%H:%M:%S}" for name, start in cur.fetchall()]
    return ", ".join(found) or "unknown holder"


@contextmanager
def team_retrain_lock(cfg: StackConfig | None, model_name: str) -> Iterator[None]:
    """Hold the advisory lock for ``model_name`` on the stack's PostgreSQL, or raise ``RetrainRunning``."""
    if cfg is None:
        yield
        return
    conn = _connect(cfg)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (lock_key(model_name),))
            if not cur.fetchone()[0]:
                raise RetrainRunning(
                    f"another retrain of {model_name} holds the team's lock on the stack's PostgreSQL ({_holders(cur)})"
                )
        yield  # closing the connection releases the lock
    finally:
        conn.close()
