"""vLLM's start on CPU as ``tests/test_engine_backend.py`` starts it, against vLLM's default 3 processes, alternated
(ratios survive a loaded machine).

Usage:
    make engine && PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.vllm_start --rounds 2

Each round starts the engine once per variant on the test's tiny Qwen2 and its LoRA adapter, and times the process
to ``GET /v1/models`` answering, then two greedy 12-token answers (base, adapter), then stops the process group.
``test flags``: the worker inside the engine core (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, ``uni``); ``3 processes``:
the same flags without those two (API server, engine core, worker, each importing vLLM). Prints one line a start.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import openai

from tests.test_engine_backend import MASKED, _free_port, vllm


def start_once(root: Path, three_processes: bool) -> tuple[float, list[float], list[str]]:
    port = _free_port()
    command, env = vllm(root, port)
    if three_processes:
        command = command[: command.index("--distributed-executor-backend")] + command[command.index("uni") + 1 :]
        env.pop("VLLM_ENABLE_V1_MULTIPROCESSING")
    with (root / "engine.log").open("w") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    began, url = time.monotonic(), f"http://127.0.0.1:{port}/v1"
    try:
        while proc.poll() is None:
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        up = time.monotonic() - began
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)
        times, answers = [], []
        for name in ("tiny-base", "other"):
            asked = time.monotonic()
            answer = client.chat.completions.create(model=name, messages=MASKED, max_tokens=12, temperature=0)
            times.append(round(time.monotonic() - asked, 2))
            answers.append(answer.choices[0].message.content)
        return up, times, answers
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vllm-start-"))
    for round_ in range(args.rounds):
        for label, three in (("test flags", False), ("3 processes", True)):
            up, times, answers = start_once(root / f"{round_}-{int(three)}", three)
            print(f"round {round_} {label}: /v1/models after {up:.1f} s; answers in {times} s: {answers}", flush=True)


if __name__ == "__main__":
    main()
