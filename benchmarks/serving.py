"""Every served form through the real HTTP server, one run, same machine: Qwen2.5-0.5B shapes, random init.

Usage:
    .venv/bin/python -m benchmarks.serving                    # 0.5B shapes (builds ~3 GB under --work-dir)
    .venv/bin/python -m benchmarks.serving --quick            # tiny shapes: a smoke run of this script

Builds (once, kept under ``--work-dir``) the random-init model with Qwen2.5-0.5B's shapes (benchmarks/real_size.py's
config values; nothing is downloaded) with the demo's tokenizer, and from it the forms the quantize stage writes:
ONNX fp32 (optimum, KV cache), int8 (dynamic), int8_block and int4 (MatMulNBits) and genai_int4 (ONNX Runtime
GenAI's model builder), the blockwise forms at ``--int4-block-size``; plus llama.cpp's Q4_K_M when llama-cpp-python
and gguf are importable (else it prints why it is skipped). Each form is served by ``slmops serve --model-path`` in
its own process (llama.cpp by ``python -m llama_cpp.server``), and driven over HTTP with the demo's inquiries:
- batch 1: ``--b1-requests`` prompts one after another, each asked for 1 token and then for ``--new-tokens``:
  TTFT p50/p95 (the 1-token answer's latency: prefill and the first token) and decode tokens/s (tokens after the
  first / the full answer's time beyond that);
- 8 and 32 concurrent clients (``--clients``; add 1 for a like-for-like ``x 1 client`` column), ``--rounds``
  non-streamed requests each: aggregate completion
  tokens/s (the server batches them, up to 32 rows: each ``--batching`` mode is served and measured in turn,
  ``continuous`` (a request joins the running decode batch at the next step) and ``dynamic`` (requests that
  queued while the model was busy share the next ``generate`` call); the GenAI form is always dynamic);
- the server process's peak RSS (VmHWM), which includes Python, torch, transformers and the runtime.
Answers run to ``--new-tokens`` unless the random model emits EOS: every rate counts the tokens ``usage`` reports.
Prints a markdown table and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from benchmarks import llama_cpp_forms
from benchmarks.real_size import SHAPES

FORMS = ("onnx_fp32", "int8", "int8_block", "int4", "genai_int4")
SERVE = {"max_in_flight": 256, "generation_timeout_s": 900.0, "max_tokens_cap": 4096, "max_batch_size": 32}


def build(shape: str, work: Path, block_size: int, forms: list[str]) -> None:
    """The random-init model with the demo tokenizer, then each form (skipped when already there)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from slmops.config import QuantizeConfig
    from slmops.export.genai import build_genai
    from slmops.export.quantize import export_onnx, quantize_int4, quantize_int8

    torch_dir = work / "torch_fp32"
    if not (torch_dir / "tokenizer.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(demo_tokenizer(work))
        spec = dict(SHAPES[shape]) | {"eos_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.bos_token_id}
        torch.manual_seed(0)
        config = AutoConfig.for_model(spec.pop("model_type"), **spec)
        AutoModelForCausalLM.from_config(config).save_pretrained(torch_dir)
        tokenizer.save_pretrained(torch_dir)
    if not (work / "onnx_fp32" / "model.onnx").exists():
        export_onnx(torch_dir, work / "onnx_fp32")
    cfg = QuantizeConfig(weight_type="int4", int4_block_size=block_size)
    steps = {
        "int8": lambda out: quantize_int8(work / "onnx_fp32", out),
        "int8_block": lambda out: quantize_int4(work / "onnx_fp32", out, cfg, bits=8),
        "int4": lambda out: quantize_int4(work / "onnx_fp32", out, cfg),
        "genai_int4": lambda out: build_genai(torch_dir, out, "int4", block_size),
    }
    for form in forms:
        if form in steps and not (work / form / "model.onnx").exists():
            steps[form](work / form)
    if "gguf_q4_k_m" in forms and not (work / "gguf_q4_k_m" / "model.gguf").exists():
        llama_cpp_forms.build(work)


def demo_tokenizer(work: Path) -> Path:
    """The demo's tokenizer (512 pieces, trained on generated inquiries) with its chat template."""
    from slmops.config.project import example_dir
    from slmops.demo.generate import generate
    from slmops.demo.tokenizer import run as train_tokenizer
    from slmops.io import write_jsonl
    from slmops.tasks import load_task

    sets = generate(1, 60, 120, 20)
    for name in ("seed", "pool"):
        write_jsonl(work / "raw" / f"{name}.jsonl", sets[name])
    task = load_task("ticket_triage", example_dir("ticket_triage"))
    train_tokenizer(512, task=task, raw_dir=work / "raw", out_dir=work / "tokenizer")
    return work / "tokenizer"


def start(form: str, work: Path, port: int, batching: str = "continuous") -> subprocess.Popen:
    """``slmops serve`` on the form's folder (llama.cpp's own server for GGUF), once /health or /v1/models answers."""
    if form.startswith("gguf"):
        model = work / form / "model.gguf"
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--port", str(port)]
        command += ["--n_ctx", "4096", "--chat_format", "chatml"]
    else:
        project = work / "project"
        if not (project / "slmops.yaml").exists():  # a project of its own: the task spec, limits for the load
            exe = Path(sys.executable).with_name("slmops")
            subprocess.run(
                [str(exe), "init", str(project), "--example", "ticket_triage"], check=True, capture_output=True
            )
            params = yaml.safe_load((project / "slmops.yaml").read_text())
            params["serve"] = params.get("serve", {}) | SERVE
            (project / "slmops.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
        command = [str(Path(sys.executable).with_name("slmops")), "serve", "--model-path", str(work / form)]
        command += [
            "--port",
            str(port),
            "--work-dir",
            str(project),
            "--no-fallback",
            "--set",
            f"serve.batching={batching}",
        ]
    # The server's output goes to a file: a pipe nobody reads fills up (llama.cpp logs ~100 KB while loading) and
    # blocks the server before it answers.
    log = work / f"server-{form}.log"
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"{form}: the server exited: {log.read_text()[-3000:]}")
        time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"{form}: the server did not answer within 600 s (see {log})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def timed(client: httpx.AsyncClient, body: dict) -> tuple[float, int]:
    """One request, not streamed: its latency and the completion tokens usage reports."""
    started = time.perf_counter()
    answer = await client.post("/v1/chat/completions", json=body)
    answer.raise_for_status()
    return time.perf_counter() - started, answer.json()["usage"]["completion_tokens"]


async def alone(client: httpx.AsyncClient, body: dict) -> dict:
    """Batch 1 on one prompt: TTFT is the latency of a 1-token answer (prefill and the first token), decoding the
    time the full answer took beyond it. Not from a stream's first text: a random-init model writes byte tokens
    that are no whole character, which every streamer (ours, transformers', llama.cpp's) holds back, so its
    "first text" can come with the last token."""
    first, _ = await timed(client, body | {"max_tokens": 1})
    total, tokens = await timed(client, body)
    return {"ttft": first, "decode_s": max(total - first, 1e-9), "tokens": tokens}


async def drive(
    url: str, prompts: list[list[dict]], new_tokens: int, b1_requests: int, clients: list[int], rounds: int
):
    figures: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=url, timeout=1800, limits=httpx.Limits(max_connections=256)) as client:
        model = (await client.get("/v1/models")).json()["data"][0]["id"]

        def body(i: int) -> dict:
            return {"model": model, "messages": prompts[i % len(prompts)], "max_tokens": new_tokens}

        await timed(client, body(0) | {"max_tokens": 4})  # warm-up
        runs = [await alone(client, body(i)) for i in range(b1_requests)]
        ttfts = sorted(r["ttft"] * 1000 for r in runs)
        figures["ttft_p50_ms"] = statistics.median(ttfts)
        figures["ttft_p95_ms"] = ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))]
        decoded = sum(max(r["tokens"] - 1, 0) for r in runs)
        figures["decode_tok_s_b1"] = decoded / max(sum(r["decode_s"] for r in runs), 1e-9)
        for count in clients:

            async def one(offset: int, count: int = count) -> int:
                done = 0
                for r in range(rounds):
                    answer = await client.post("/v1/chat/completions", json=body(offset + r * count))
                    answer.raise_for_status()
                    done += answer.json()["usage"]["completion_tokens"]
                return done

            started = time.perf_counter()
            tokens = sum(await asyncio.gather(*(one(i) for i in range(count))))
            figures[f"agg_tok_s_c{count}"] = tokens / (time.perf_counter() - started)
    return figures


def measure(form: str, work: Path, args, prompts: list[list[dict]], batching: str = "continuous") -> dict:
    from slmops.export.quantize import dir_size_mb

    port = free_port()
    server = start(form, work, port, batching)
    try:
        label = form if form.startswith("gguf") or len(args.batching) == 1 else f"{form} ({batching})"
        row = {"form": label, "batching": batching, "size_mb": dir_size_mb(work / form)}
        url = f"http://127.0.0.1:{port}"
        row |= asyncio.run(drive(url, prompts, args.new_tokens, args.b1_requests, args.clients, args.rounds))
        row["peak_rss_mb"] = peak_rss_mb(server.pid)
        return row
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def table(rows: list[dict], clients: list[int]) -> str:
    """One row per form. With ``--clients 1 ...`` each count also gets ``x 1 client``: its aggregate against one
    client's on the same workload, prefill included on both sides (``x b1`` divides by a decode-only rate)."""
    like = 1 in clients
    head = "| form | size MB | decode tok/s b1 | TTFT p50 ms | TTFT p95 ms |"
    head += "".join(f" {c} clients tok/s | x b1 |" + (" x 1 client |" if like else "") for c in clients)
    head += " server peak RSS MB |"
    out = [head, "|---|" + "---:|" * (5 + (3 if like else 2) * len(clients))]
    for r in rows:
        cells = [
            f"{r['size_mb']:.0f}",
            f"{r['decode_tok_s_b1']:.1f}",
            f"{r['ttft_p50_ms']:.0f}",
            f"{r['ttft_p95_ms']:.0f}",
        ]
        for c in clients:
            cells += [f"{r[f'agg_tok_s_c{c}']:.1f}", f"{r[f'agg_tok_s_c{c}'] / r['decode_tok_s_b1']:.2f}"]
            cells += [f"{r[f'agg_tok_s_c{c}'] / r['agg_tok_s_c1']:.2f}"] if like else []
        out.append(f"| {r['form']} | " + " | ".join(cells) + f" | {r['peak_rss_mb']:.0f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=None, help="default /tmp/slmops-serving[-quick]")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few requests: a smoke run")
    parser.add_argument("--forms", nargs="*", default=[*FORMS, "gguf_q4_k_m"])
    parser.add_argument("--new-tokens", type=int, default=None, help="per request (default 64; --quick 16)")
    parser.add_argument("--b1-requests", type=int, default=None, help="one at a time (default 10; quick 3)")
    parser.add_argument("--clients", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--rounds", type=int, default=None, help="requests per client (default 2; quick 1)")
    parser.add_argument("--int4-block-size", type=int, default=128)
    parser.add_argument(
        "--batching", nargs="*", default=["continuous", "dynamic"], help="serve.batching modes, each served in turn"
    )
    args = parser.parse_args()
    quick = args.quick
    args.new_tokens = args.new_tokens or (16 if quick else 64)
    args.b1_requests = args.b1_requests or (3 if quick else 10)
    args.rounds = args.rounds or (1 if quick else 2)
    work = args.work_dir or Path("/tmp/slmops-serving" + ("-quick" if quick else ""))
    work.mkdir(parents=True, exist_ok=True)
    forms = list(args.forms)
    if "gguf_q4_k_m" in forms and not llama_cpp_forms.available():
        print(llama_cpp_forms.MISSING.replace("forms skipped", "Q4_K_M skipped"), flush=True)
        forms.remove("gguf_q4_k_m")
    build("tiny" if quick else "qwen2.5-0.5b", work, args.int4_block_size, forms)
    prompts = demo_prompts()
    rows = []
    for form in forms:
        for batching in args.batching[:1] if form.startswith("gguf") else args.batching:  # llama.cpp: its own
            print(f"serving {form} ({batching}) ...", flush=True)
            try:
                rows.append(measure(form, work, args, prompts, batching))
            except RuntimeError as err:  # one form that does not serve costs its row, not the others'
                print(f"{form}: no figures: {err}", flush=True)
                continue
            print(json.dumps(rows[-1]), flush=True)  # each row as it is measured
    print(table(rows, args.clients))
    print(json.dumps({"shape": "tiny" if quick else "qwen2.5-0.5b", "cpus": os.cpu_count(), "rows": rows}))


def demo_prompts() -> list[list[dict]]:
    """Chat messages for the demo's generated test inquiries, as the server's clients send them."""
    from slmops.config.project import example_dir
    from slmops.demo.generate import generate
    from slmops.tasks import load_task

    task = load_task("ticket_triage", example_dir("ticket_triage"))
    return [task.build_messages(row["input"]) for row in generate(2, 10, 10, 64)["test"]]


if __name__ == "__main__":
    main()
