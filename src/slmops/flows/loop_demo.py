"""``slmops loop demo``: the whole loop on real parts, after ``make demo``.

Usage:
    slmops loop demo --profile loop        # or: make loop

1. Serve the ``poc`` version with ``slmops serve`` (a real server process, alias hot reload on).
2. Control: send in-distribution traffic (the task's demo generator, new seed) through HTTP with the official
   ``openai`` client, one monitor window at a time; run the monitor flow after each window. No retrain starts.
3. Shift: send traffic from the part of the world the launch data did not cover (the generator with
   ``shifted=True``), a window at a time, monitoring after each, until the trigger policy starts a retrain:
   harvest -> teacher labels -> train -> champion vs challenger -> promote; the server reloads the new holder.
4. Print a before/after table: accuracy on a held-out shifted slice (generated, never sent), on the gold test
   set, on the hand-written dev set when params name one (never sent, never trained on), teacher calls, the
   served version and wall time per step.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from slmops.config import Params
from slmops.flows.stages import Ctx


def demo_traffic(ctx: Ctx, seed: int, n: int, shifted: bool) -> list[dict]:
    """Labelled rows from the task's demo generator: the launch world, or (``shifted``) the rest of it."""
    from slmops.demo import load_generator

    spec = ctx.task.spec
    if spec.demo_generator is None:
        raise SystemExit(f"task {ctx.task.name!r} names no demo_generator: the loop demo cannot make traffic")
    options = dict(ctx.params.demo.generator_options) | ({"shifted": True} if shifted else {})
    try:
        rows = load_generator(spec.demo_generator)(seed, 0, 0, n, **options)["test"]
    except TypeError as err:
        raise SystemExit(f"{spec.demo_generator} cannot make shifted traffic ({err})") from None
    return [{"input": r[spec.input_field], "expected": r["expected"]} for r in rows]


def start_server(ctx: Ctx, profile: str | None) -> tuple[subprocess.Popen, str]:
    """``slmops serve --alias poc`` in its own process; returns it and its base URL once /health answers."""
    import httpx

    port = ctx.params.loop.demo.port
    log = open(ctx.layout.loop_demo_server_log, "w")  # noqa: SIM115 (closed with the process)
    command = [sys.executable, "-m", "slmops.cli", "serve", "--alias", "poc", "--port", str(port)]
    server = subprocess.Popen(
        command + ["--profile", profile, "--work-dir", str(ctx.root)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}); see {log.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server, f"http://127.0.0.1:{port}"
        except httpx.HTTPError:
            time.sleep(0.5)
    server.terminate()
    raise SystemExit(f"the server did not answer /health within 120 s; see {log.name}")


def served_version(url: str) -> str:
    import httpx

    return str(httpx.get(f"{url}/health", timeout=5).json()["version"])


def send(url: str, model: str, rows: list[dict], concurrency: int, max_tokens: int) -> int:
    """Each row as one chat completion through the official client; returns how many were answered."""
    from concurrent.futures import ThreadPoolExecutor

    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key="loop-demo", max_retries=2)

    def one(row: dict) -> bool:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": row["input"]}], max_tokens=max_tokens, temperature=0
        )
        return bool(reply.choices[0].message.content)

    with ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(one, rows))


def accuracy(ctx: Ctx, version: str, rows: list[dict]) -> dict[str, float]:
    """The task's metrics for registered ``version`` on ``rows``, offline (nothing reaches the inference log).
    Each input is what the served model reads (``serve.mask_inputs``: NFKC and PII placeholders)."""
    from slmops.evaluate.stage import evaluate_model
    from slmops.registry.aliases import load_version
    from slmops.text import pii

    if ctx.params.serve.mask_inputs:
        rows = [r | {"input": pii.mask(r["input"], cfg=ctx.params.pii, ner=False)} for r in rows]
    model = load_version(ctx.params.model_name, version)
    metrics, _ = evaluate_model(model, ctx.task, rows, ctx.params.evaluate.max_new_tokens, desc=f"v{version}")
    return metrics


def dev_rows(ctx: Ctx) -> list[dict]:
    from slmops.io import load_jsonl

    path = ctx.params.loop.demo.dev_set
    return load_jsonl(ctx.root / path) if path else []


class Steps:
    """Wall time per step, printed as it goes."""

    def __init__(self, profile: str | None, work_dir: Path) -> None:
        self.seconds: dict[str, float] = {}
        self.profile, self.work_dir = profile, work_dir

    def run(self, name: str, fn, *args, **kwargs) -> Any:
        started = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - started, 1)
        print(f"  {name:<34} {self.seconds[name]:7.1f} s", flush=True)
        return out


def _monitor(profile: str | None, work_dir: Path) -> dict[str, Any]:
    from slmops.flows.monitor import monitor_flow

    return monitor_flow(profile=profile, work_dir=str(work_dir), retrain=True)


def run_demo(params: Params, profile: str | None, work_dir: Path) -> dict[str, Any]:
    """The loop demo (see the module docstring); returns the before/after figures."""
    ctx, cfg = Ctx(params, work_dir.resolve()), params.loop.demo
    seed, window = params.project.seed, params.monitor.window
    control = demo_traffic(ctx, seed + 1001, window * cfg.control_windows, shifted=False)
    shifted = demo_traffic(ctx, seed + 2002, window * cfg.max_shift_windows + cfg.eval_rows, shifted=True)
    held_out, stream = shifted[: cfg.eval_rows], shifted[cfg.eval_rows :]
    steps, figures = Steps(profile, work_dir), {}
    server, url = steps.run("start server (poc)", start_server, ctx, profile)
    try:
        before = served_version(url)
        figures["before"] = _measure(ctx, steps, before, held_out, "before")
        for i in range(cfg.control_windows):
            result = _window(steps, f"control window {i + 1}", ": monitor", url, params, control[i * window :][:window])
            figures.setdefault("control", []).append(result["decision"]["reason"])
        retrain = None
        for i in range(cfg.max_shift_windows):
            rows = stream[i * window :][:window]
            result = _window(steps, f"shifted window {i + 1}", ": monitor (+ retrain)", url, params, rows)
            if "retrain" in result:
                retrain = result["retrain"]
                break
        if retrain and "flow_run_id" in retrain:  # the retrain deployment runs on a stack's worker: wait for it
            retrain = steps.run("retrain (deployment, on a worker)", await_deployment_run, ctx, retrain, before)
        promoted = (retrain or {}).get("gate", {}).get("version") not in (None, before)
        after = steps.run("server reload", _wait_for_new_version, url, before, 120.0) if promoted else before
        figures["after"] = _measure(ctx, steps, after, held_out, "after") if after != before else figures["before"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"versions": (before, after), "figures": figures, "steps": steps.seconds, "retrain": retrain}


def _window(steps: Steps, name: str, monitored: str, url: str, params: Params, rows: list[dict]) -> dict[str, Any]:
    """Send one window of traffic through the server, then run the monitor flow on it."""
    steps.run(
        f"{name}: send",
        send,
        url,
        params.model_name,
        rows,
        params.loop.demo.concurrency,
        params.evaluate.max_new_tokens,
    )
    return steps.run(name + monitored, _monitor, steps.profile, steps.work_dir)


def _measure(ctx: Ctx, steps: Steps, version: str, held_out: list[dict], when: str) -> dict[str, Any]:
    from slmops.io import load_jsonl

    gold = load_jsonl(ctx.layout.prepared / "test.jsonl")
    sets = {"shifted slice": held_out, "gold test": gold, "hand-written dev": dev_rows(ctx)}
    return {
        name: steps.run(f"measure v{version} on {name} ({when})", accuracy, ctx, version, rows)
        for name, rows in sets.items()
        if rows
    }


def await_deployment_run(ctx: Ctx, retrain: dict[str, Any], before: str) -> dict[str, Any]:
    """Wait for the retrain deployment's flow run (``monitor.start_retrain`` scheduled it on the work pool), then
    read what it decided from where it wrote it: the ``poc`` alias in the registry and the champion-vs-challenger
    report. A run that did not complete counts as no promotion, with its final state as the reason."""
    import asyncio
    import json
    from uuid import UUID

    from prefect.flow_runs import wait_for_flow_run

    from slmops.registry.aliases import alias_version

    flow_run = asyncio.run(wait_for_flow_run(UUID(retrain["flow_run_id"]), timeout=RETRAIN_TIMEOUT_S, log_states=True))
    state = flow_run.state.name if flow_run.state else "unknown"
    report = ctx.layout.reports / "challenge" / "decision.json"
    fresh = report.exists() and flow_run.start_time and report.stat().st_mtime >= flow_run.start_time.timestamp()
    challenge = json.loads(report.read_text(encoding="utf-8")) if fresh else None  # a ChallengeResult
    if not (flow_run.state and flow_run.state.is_completed()):
        challenge = {"decision": {"passed": False, "reasons": [f"the retrain flow run ended {state}"]}}
    version = alias_version(ctx.params.model_name, "poc")
    gate = {"version": version if version != before else None, "challenge": challenge}
    return retrain | {"started": True, "state": state, "gate": gate}


RETRAIN_TIMEOUT_S = 3600  # how long the demo waits for a retrain that a worker runs


def _wait_for_new_version(url: str, before: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = served_version(url)
        if now != before:
            return now
        time.sleep(0.5)
    return before


def table(out: dict[str, Any], metric: str) -> str:
    """The before/after table a person reads, then what the trigger decided on each control window."""
    (before, after), figures = out["versions"], out["figures"]
    rows = [
        (f"{name}: {metric}", f"{figures['before'][name][metric]:.3f}", f"{figures['after'][name][metric]:.3f}")
        for name in figures["before"]
    ]
    retrain = out.get("retrain") or {}
    if retrain.get("started"):
        gate = retrain.get("gate", {})
        verdict = (gate.get("challenge") or {}).get("decision", {})
        rows.append(
            ("challenger", "", "won" if verdict.get("passed") else "lost: " + "; ".join(verdict.get("reasons", [])))
        )
        rows.append(("teacher calls in the retrain", "", str(retrain.get("teacher_calls", "-"))))
    else:
        rows.append(("retrain", "", "not started"))
    rows.append(("served version", before, after))
    rows.append(("total wall time", "", f"{sum(out['steps'].values()):.0f} s"))
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'':<{width}}{'before':>10}{'after':>12}"]
    lines += [
        f"{name:<{width}}{b:>10}{a:>12}" if len(a) <= 12 else f"{name:<{width}}{b:>10}  {a}" for name, b, a in rows
    ]
    lines += [f"control window {i + 1}: {reason}" for i, reason in enumerate(figures.get("control", []))]
    return "\n".join(lines)
