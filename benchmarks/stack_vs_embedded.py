"""The smoke pipeline on the embedded defaults and on the team's stack, one after the other on the same machine:
wall time of `slmops run`, of a no-op rerun (every stage cached), and the orchestration overhead per stage.

Usage (from the repository, after `make install`; PostgreSQL installed; takes ~15 min on 2 cores):
    .venv/bin/python benchmarks/stack_vs_embedded.py [--profile smoke]     # BENCH_ORDER=embedded,stack: the other order

Overhead per stage = (wall time of `slmops run` - the seconds the stages report) / number of stages: what
Prefect, MLflow (nested runs, params, artifacts) and the process start cost around the stages themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
STAGE_LINE = re.compile(r"^\s+(\w+)\s+(ran|cached)\s+([\d.]+) s", re.M)


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return round(time.perf_counter() - started, 1), proc.stdout


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def free_base() -> int:
    """Ports base .. base+12 (object store, PostgreSQL, MLflow, Prefect) and the store's admin gRPC port."""
    for base in range(31000, 39000, 20):
        if all(_free(p) for p in [*range(base, base + 13), base + 4 + 10000]):
            return base
    raise SystemExit("no free ports")


def stage_seconds(stdout: str) -> tuple[float, int]:
    found = [float(m.group(3)) for m in STAGE_LINE.finditer(stdout)]
    return sum(found), len(found)


def measure(project: Path, env: dict[str, str], profile: str) -> dict[str, float]:
    slmops = str(BIN / "slmops")
    out = {"demo build": timed([slmops, "demo", "build", "--profile", profile], project, env)[0]}
    wall, stdout = timed([slmops, "run", "--profile", profile], project, env)
    stages, n = stage_seconds(stdout)
    out |= {"run": wall, "stages": round(stages, 1), "overhead per stage": round((wall - stages) / n, 1)}
    out["no-op rerun"] = timed([slmops, "run", "--profile", profile], project, env)[0]
    out["no-op rerun per stage"] = round(out["no-op rerun"] / n, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    args = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="slmops-bench-stack-"))
    parent.chmod(0o755)  # PostgreSQL's own user must reach the project when this runs as root
    foreign = ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "SLMOPS_PROFILE", "SLMOPS_PROJECT")
    env = {k: v for k, v in os.environ.items() if k not in foreign} | {"DVC_NO_ANALYTICS": "1"}
    env |= {"SLMOPS_STACK_PG_PASSWORD": secrets.token_hex(12), "SLMOPS_STACK_S3_ACCESS_KEY": "bench"}
    env |= {"SLMOPS_STACK_S3_SECRET_KEY": secrets.token_hex(16)}
    results: dict[str, dict[str, float]] = {}
    try:
        for kind in os.environ.get("BENCH_ORDER", "stack,embedded").split(","):
            project = parent / kind
            subprocess.run([str(BIN / "slmops"), "init", str(project), "--example", "ticket_triage"], check=True,
                           capture_output=True, env=env)  # fmt: skip
            results[kind] = {}
            if kind == "stack":
                base = free_base()
                section = {"object_store": {"port": base}, "postgres": {"port": base + 10}}
                section |= {"mlflow": {"port": base + 11}, "prefect": {"port": base + 12}}
                with open(project / "slmops.yaml", "a", encoding="utf-8") as fh:
                    fh.write("stack: " + json.dumps(section) + "\n")
                results[kind]["stack up (cold)"] = timed([str(BIN / "slmops"), "stack", "up"], project, env)[0]
            results[kind] |= measure(project, env, args.profile)
            if kind == "stack":
                results[kind]["stack down"] = timed([str(BIN / "slmops"), "stack", "down"], project, env)[0]
            print(kind, json.dumps(results[kind]), flush=True)
    finally:
        subprocess.run([str(BIN / "slmops"), "stack", "down"], cwd=parent / "stack", env=env, capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)
    rows = sorted({key for r in results.values() for key in r}, key=list(results["stack"]).index)
    print(f"| seconds ({args.profile} profile) | embedded | stack |\n|---|---:|---:|")
    for key in rows:
        print(f"| {key} | {results['embedded'].get(key, '')} | {results['stack'].get(key, '')} |")


if __name__ == "__main__":
    main()
