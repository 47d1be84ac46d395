"""PostgreSQL for the stack, from the distribution's package: its own cluster in the project, its own port.

Usage:
    init_cluster(cfg, layout, secrets)      # initdb once (the superuser's password from the environment)
    start(cfg, host, layout); ensure_databases(cfg, host, secrets, ["mlflow", "prefect"])
    stop(cfg, layout)                       # pg_ctl stop -m fast; the data stays

PostgreSQL refuses to run as root: when slmops runs as root, initdb and the server run as ``cfg.os_user``
(the package's ``postgres`` user), which then owns the data folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from slmops.config.layout import Layout
from slmops.config.stack import PostgresConfig
from slmops.stack.procs import StackError
from slmops.stack.secrets import Secrets

INSTALL_HINT = "install it: apt-get install -y postgresql (make install does this when run as root)"


def bin_dir(cfg: PostgresConfig) -> Path:
    """The server's programs: ``cfg.bin_dir``, else the newest /usr/lib/postgresql/<n>/bin, else PATH."""
    if cfg.bin_dir:
        return Path(cfg.bin_dir)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found is None:
        raise StackError(f"PostgreSQL's initdb not found; {INSTALL_HINT}")
    return Path(found).parent


def _as_server_user(cmd: list[str], cfg: PostgresConfig) -> list[str]:
    return ["runuser", "-u", cfg.os_user, "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], cfg: PostgresConfig, what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(_as_server_user(cmd, cfg), capture_output=True, text=True, cwd="/")
    if proc.returncode != 0:
        raise StackError(f"PostgreSQL {what} failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


def _give_to_server_user(path: Path, cfg: PostgresConfig) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user=cfg.os_user, group=None)


def init_cluster(cfg: PostgresConfig, layout: Layout, secrets: Secrets) -> bool:
    """initdb into the project's stack folder unless a cluster is already there; True when it made one."""
    data = layout.stack_postgres
    if (data / "PG_VERSION").is_file():
        return False
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    _give_to_server_user(data, cfg)
    if os.geteuid() == 0 and subprocess.run(["runuser", "-u", cfg.os_user, "--", "test", "-w", str(data)]).returncode:
        raise StackError(
            f"user {cfg.os_user!r} cannot reach {data}: PostgreSQL refuses root, so the server runs as that user, "
            "and every folder above the project must be searchable by it (chmod o+x), or run slmops as another user"
        )
    pwfile = layout.stack_dir / ".initdb-password"
    pwfile.write_text(secrets.pg_password + "\n", encoding="utf-8")
    pwfile.chmod(0o600)
    _give_to_server_user(pwfile, cfg)
    try:
        initdb = [str(bin_dir(cfg) / "initdb"), "-D", str(data), "-U", cfg.user, f"--pwfile={pwfile}"]
        _run([*initdb, "--auth=scram-sha-256", "--encoding=UTF8", "--no-instructions"], cfg, "initdb")
    finally:
        pwfile.unlink(missing_ok=True)
    with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write("\n# slmops stack: settings that follow slmops.yaml are rewritten before every start\n")
        conf.write("include_if_exists = 'slmops.conf'\n")
    return True


def running(cfg: PostgresConfig, layout: Layout) -> bool:
    if not (layout.stack_postgres / "PG_VERSION").is_file():
        return False
    status = _as_server_user([str(bin_dir(cfg) / "pg_ctl"), "status", "-D", str(layout.stack_postgres)], cfg)
    return subprocess.run(status, capture_output=True, cwd="/").returncode == 0


def start(cfg: PostgresConfig, host: str, layout: Layout, timeout: float) -> None:
    """Start the cluster on ``host:cfg.port`` (TCP only, no Unix socket) and wait until it accepts connections."""
    settings = layout.stack_postgres / "slmops.conf"
    settings.write_text(
        f"listen_addresses = '{host}'\nport = {cfg.port}\nunix_socket_directories = ''\n", encoding="utf-8"
    )
    _give_to_server_user(settings, cfg)
    log = layout.stack_postgres / "server.log"
    pg_ctl = [str(bin_dir(cfg) / "pg_ctl"), "start", "-D", str(layout.stack_postgres), "-l", str(log), "-w"]
    _run([*pg_ctl, "-t", str(int(timeout))], cfg, f"start (log: {log})")


def stop(cfg: PostgresConfig, layout: Layout) -> bool:
    if not running(cfg, layout):
        return False
    _run([str(bin_dir(cfg) / "pg_ctl"), "stop", "-D", str(layout.stack_postgres), "-m", "fast", "-w"], cfg, "stop")
    return True


def ready(cfg: PostgresConfig, host: str) -> bool:
    """``pg_isready``: the server accepts connections (needs no password)."""
    cmd = [str(bin_dir(cfg) / "pg_isready"), "-q", "-h", host, "-p", str(cfg.port), "-t", "3"]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def url(cfg: PostgresConfig, host: str, database: str, driver: str = "postgresql") -> str:
    """A connection URL without the password: clients read it from ``PGPASSWORD`` (``Secrets.pg_env``)."""
    return f"{driver}://{cfg.user}@{host}:{cfg.port}/{database}"


def ensure_databases(cfg: PostgresConfig, host: str, secrets: Secrets, names: list[str]) -> list[str]:
    """Create the databases that do not exist yet; returns the ones it created."""
    import psycopg2

    conn = psycopg2.connect(
        host=host, port=cfg.port, user=cfg.user, password=secrets.pg_password, dbname="postgres", connect_timeout=10
    )
    conn.autocommit = True
    created = []
    try:
        with conn.cursor() as cur:
            for name in names:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}" OWNER "{cfg.user}"')
                    created.append(name)
    finally:
        conn.close()
    return created
