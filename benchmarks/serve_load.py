"""Load test of ``slmops serve``: K concurrent clients for T seconds on loopback, int8 ONNX vs transformers.

Usage (after ``make demo``, which builds both models):
    .venv/bin/python -m benchmarks.serve_load                       # 8 clients x 30 s per model
    .venv/bin/python -m benchmarks.serve_load --clients 16 --seconds 60 --max-tokens 64

Each model is served by the real ``slmops serve --model-path`` in its own process (its own inference log,
every row fsync'ed) and loaded by one client process that keeps K requests in flight, each sending the next
gold test inquiry as soon as its previous answer is back. The first requests (``--warmup``) are not timed.
Both models run with each ``--batch-sizes`` value (``serve.max_batch_size``; 1 turns dynamic batching off).
T is split into ``--rounds`` that alternate between the servers, so the ratios are measured side by side.
Per model it prints requests/s, p50/p95/p99 latency, errors (any non-200), and inference-log rows against
requests answered; then the int8-over-transformers ratios. It also measures what an inference-log row costs
(with and without fsync) and, on the whole ``--data`` file, how many int8 greedy answers are identical batched
and alone. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from slmops.config.project import example_dir
from slmops.io import load_jsonl
from slmops.tasks import load_task

task = load_task("ticket_triage", example_dir("ticket_triage"))  # the demo task these benchmarks drive


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_path: Path, work: Path, port: int, max_batch_size: int) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("slmops")
    if not (work / "slmops.yaml").exists():  # a project of its own: the task spec, its own inference log
        subprocess.run([str(exe), "init", str(work), "--example", "ticket_triage"], check=True, capture_output=True)
    command = [str(exe), "serve", "--model-path", str(model_path), "--port", str(port), "--work-dir", str(work)]
    command += ["--max-batch-size", str(max_batch_size), "--no-fallback"]  # the model alone
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {server.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            server.kill()
            raise RuntimeError("the server did not start within 180 s")
        time.sleep(0.5)


async def load(url: str, prompts: list[str], clients: int, seconds: float, warmup: int, max_tokens: int) -> dict:
    """Keep ``clients`` requests in flight for ``seconds``; the raw latencies and status counts."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    offset = random.randrange(len(prompts))
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as client:
        model = (await client.get("/v1/models")).json()["data"][0]["id"]

        def body(i: int) -> dict:
            text = prompts[(offset + i) % len(prompts)]
            return {"model": model, "messages": task.build_messages(text), "max_tokens": max_tokens}

        for i in range(warmup):
            (await client.post("/v1/chat/completions", json=body(i))).raise_for_status()
        deadline = time.perf_counter() + seconds
        sent = warmup

        async def one_client() -> None:
            nonlocal sent
            while time.perf_counter() < deadline:
                sent += 1
                started = time.perf_counter()
                try:
                    status = (await client.post("/v1/chat/completions", json=body(sent))).status_code
                except httpx.TransportError:
                    status = 0
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "statuses": statuses, "elapsed": elapsed, "warmup": warmup}


def summarise(rounds: list[dict], log: Path) -> dict:
    latencies = sorted(x for r in rounds for x in r["latencies"])
    statuses: dict[int, int] = {}
    for r in rounds:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    warmup = sum(r["warmup"] for r in rounds)

    def pct(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)

    return {
        "requests": sum(statuses.values()) + warmup,
        "ok": statuses.get(200, 0) + warmup,
        "errors": sum(n for s, n in statuses.items() if s != 200),
        "rps": round(statuses.get(200, 0) / sum(r["elapsed"] for r in rounds), 2),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "mean_ms": round(1000 * statistics.fmean(latencies), 1),
        "log_rows": len(load_jsonl(log)) if log.exists() else 0,
    }


def batch_agreement(model_path: Path, rows: list[dict], batch_size: int, max_tokens: int) -> dict:
    """Greedy answers of ``model_path`` alone and in batches of ``batch_size``: how many are identical, and
    the category accuracy of each (an int8 model's activation scales depend on the batch)."""
    from slmops.inference.chat_model import ChatModel

    model = ChatModel.load(model_path)
    conversations = [task.build_messages(row["input"]) for row in rows]
    alone = [model.chat(c, max_tokens=max_tokens).text for c in conversations]
    batched = [
        completion.text
        for i in range(0, len(conversations), batch_size)
        for completion in model.chat_batch(conversations[i : i + batch_size], max_tokens=max_tokens)
    ]

    def accuracy(texts: list[str]) -> float:
        labels = [task.parse_output(text)[0] for text in texts]
        pairs = zip(labels, rows, strict=True)
        hits = [label is not None and label.category == row["expected"]["category"] for label, row in pairs]
        return round(sum(hits) / len(rows), 4)

    identical = sum(a == b for a, b in zip(alone, batched, strict=True))
    return {"identical": identical, "of": len(rows)} | {
        "accuracy_alone": accuracy(alone),
        "accuracy_batched": accuracy(batched),
    }


def log_row_cost(rows: int = 500) -> dict:
    """Milliseconds to append one inference-log row, with and without fsync (on the temp dir's disk)."""
    from slmops.serve.inference_log import InferenceLog

    row = {"id": "chatcmpl-x", "input": "荷物がまだ届きません。" * 4, "output": '{"category": "shipping"}' * 4}
    cost = {}
    with tempfile.TemporaryDirectory(prefix="slmops-log-") as tmp:
        for fsync in (True, False):
            log = InferenceLog(Path(tmp) / f"{fsync}.jsonl", fsync=fsync)
            started = time.perf_counter()
            for _ in range(rows):
                log.append(row)
            cost["fsync_ms" if fsync else "no_fsync_ms"] = round(1000 * (time.perf_counter() - started) / rows, 3)
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--int8", type=Path, default=Path("models/student_onnx/int8"), help="ONNX int8 folder")
    parser.add_argument("--transformers", type=Path, default=Path("models/student"), help="the same model, merged")
    parser.add_argument("--data", type=Path, default=Path("data/prepared/test.jsonl"), help="inquiries to send")
    parser.add_argument("--clients", type=int, default=8, help="requests kept in flight (K)")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed load per model (T)")
    parser.add_argument("--rounds", type=int, default=3, help="T is split into this many alternating rounds")
    parser.add_argument("--warmup", type=int, default=8, help="untimed requests first")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--batch-sizes", default="8,1", help="serve.max_batch_size values to run (1: no batching)")
    args = parser.parse_args()
    for folder in (args.int8, args.transformers, args.data):
        if not folder.exists():
            sys.exit(f"{folder} not found: run `make demo` first, or pass --int8/--transformers/--data")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    gold = load_jsonl(args.data)
    prompts = [row["input"] for row in gold]
    offline = {"log_row": log_row_cost()}
    cost = offline["log_row"]
    print(f"inference-log row: {cost['fsync_ms']} ms with fsync, {cost['no_fsync_ms']} ms without", flush=True)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    servers = {
        f"{model}/batch{size}": (path, size)
        for model, path in (("int8_onnx", args.int8), ("transformers", args.transformers))
        for size in batch_sizes
    }
    rounds: dict[str, list[dict]] = {name: [] for name in servers}
    results = {}
    with tempfile.TemporaryDirectory(prefix="slmops-load-") as tmp:
        with contextlib.ExitStack() as stack:
            urls = {}
            for name, (path, size) in servers.items():  # all up front; an idle server uses no CPU
                port = _free_port()
                stack.callback(_stop, start_server(path.resolve(), Path(tmp) / name, port, size))
                urls[name] = f"http://127.0.0.1:{port}"
            # Alternate the servers in rounds, so a slower stretch of a shared machine hits all alike.
            for i in range(args.rounds):
                for name, url in urls.items():
                    warmup = args.warmup if i == 0 else 0
                    seconds = args.seconds / args.rounds
                    rounds[name].append(asyncio.run(load(url, prompts, args.clients, seconds, warmup, args.max_tokens)))
        for name in servers:  # servers stopped: every row they wrote is in their logs
            results[name] = r = summarise(rounds[name], Path(tmp) / name / "logs" / "inference.jsonl")
            print(
                f"{name:<22} {r['rps']:>7.2f} req/s  p50 {r['p50_ms']:>7.1f} ms  p95 {r['p95_ms']:>7.1f}  "
                f"p99 {r['p99_ms']:>7.1f}  errors {r['errors']}  log rows {r['log_rows']}/{r['ok']} answered "
                f"({r['requests']} sent)",
                flush=True,
            )
    ratios = {}
    for size in batch_sizes:
        a, b = results[f"int8_onnx/batch{size}"], results[f"transformers/batch{size}"]
        ratios[f"batch{size}"] = {"rps": round(a["rps"] / b["rps"], 2), "p50": round(b["p50_ms"] / a["p50_ms"], 2)}
        print(
            f"batch {size}: int8 ONNX vs transformers: {ratios[f'batch{size}']['rps']}x the requests/s, "
            f"p50 {ratios[f'batch{size}']['p50']}x lower"
        )
    largest = max(batch_sizes)
    if largest > 1:  # are batched answers the ones the gates measured (one request at a time)?
        offline["int8_batch_agreement"] = a = batch_agreement(args.int8, gold, largest, args.max_tokens)
        print(
            f"int8 greedy answers in batches of {largest}: {a['identical']}/{a['of']} identical to one at a time; "
            f"category accuracy {a['accuracy_batched']} batched vs {a['accuracy_alone']} alone"
        )
    summary = {"clients": args.clients, "seconds": args.seconds, "rounds": args.rounds, "max_tokens": args.max_tokens}
    print(json.dumps({**summary, **results, "ratio_int8": ratios, **offline}))


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=30)


if __name__ == "__main__":
    main()
