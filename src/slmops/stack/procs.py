"""The stack's background servers: start one detached with its log and a pid file, tell whether it still runs,
stop it (and its children), wait for its health.

Usage:
    pid = start("mlflow", ["mlflow", "server", ...], env=env, layout=layout)
    wait_healthy("mlflow", lambda: http_ok("http://127.0.0.1:55000/health"), layout, timeout=120)
    stop("mlflow", layout)

A pid file records the process's start time too, so a pid the kernel reused for another program is never
taken for ours (and never signalled).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from slmops.config.layout import Layout


class StackError(RuntimeError):
    """A component of the stack could not be started, reached or stopped; the message says which and why."""


def log_path(name: str, layout: Layout) -> Path:
    return layout.stack_logs / f"{name}.log"


def _pid_file(name: str, layout: Layout) -> Path:
    return layout.stack_pids / f"{name}.json"


def start(name: str, cmd: list[str], *, env: dict[str, str], layout: Layout, cwd: Path | None = None) -> int:
    """Start ``cmd`` in its own session (so ``stop`` reaches its children), output appended to its log."""
    log = log_path(name, layout)
    log.parent.mkdir(parents=True, exist_ok=True)
    layout.stack_pids.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd or layout.root,
            start_new_session=True,
        )  # fmt: skip
    record = {"pid": proc.pid, "started": psutil.Process(proc.pid).create_time(), "cmd": cmd[:3]}
    _pid_file(name, layout).write_text(json.dumps(record), encoding="utf-8")
    return proc.pid


def running_pid(name: str, layout: Layout) -> int | None:
    """The pid of the ``name`` server this stack started, if that very process still runs."""
    path = _pid_file(name, layout)
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    try:
        proc = psutil.Process(record["pid"])
        if abs(proc.create_time() - record["started"]) > 1 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.NoSuchProcess:
        return None
    return record["pid"]


def stop(name: str, layout: Layout, timeout: float = 30.0) -> bool:
    """SIGTERM the server's process group, SIGKILL it after ``timeout``; False when it was not running."""
    pid = running_pid(name, layout)
    _pid_file(name, layout).unlink(missing_ok=True)
    if pid is None:
        return False
    group = [pid] + [c.pid for c in _children(pid)]
    os.killpg(pid, signal.SIGTERM)
    gone = _wait_gone(group, timeout)
    if not gone:
        for left in group:
            try:
                os.kill(left, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _wait_gone(group, 5.0)
    return True


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _wait_gone(pids: list[int], timeout: float) -> bool:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return not alive


def port_open(host: str, port: int) -> bool:
    """Something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 3.0) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def log_tail(name: str, layout: Layout, lines: int = 15) -> str:
    path = log_path(name, layout)
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def wait_healthy(name: str, check: Callable[[], bool], layout: Layout, timeout: float, pid_name: str | None = None):
    """Poll ``check`` until it passes; fail at once, with the log's tail, if the server's process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid_name is not None and running_pid(pid_name, layout) is None:
            raise StackError(
                f"{name} exited while starting; {log_path(pid_name, layout)} ends:\n{log_tail(pid_name, layout)}"
            )
        time.sleep(0.5)
    where = log_path(pid_name or name, layout)
    raise StackError(f"{name} not healthy after {timeout:.0f} s; {where} ends:\n{log_tail(pid_name or name, layout)}")
