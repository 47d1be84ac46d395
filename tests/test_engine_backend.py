"""``serve.engine``: the official ``openai`` client -> the slmops front (API keys on, PII masking on) -> a real
llama.cpp OpenAI server (``python -m llama_cpp.server`` from ``llama-cpp-python[server]``) serving a tiny random
Qwen2 written to GGUF with its real tokenizer. Two models on the engine stand for two adapters: the front passes
the requested name through (``serve.lora_modules`` with an engine).

Skipped, saying why, when the ``engine`` extra is not installed (llama-cpp-python builds llama.cpp from source).
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from slmops.config import EngineConfig, PIIConfig, ServeConfig
from slmops.io import load_jsonl
from slmops.serve.app import BackgroundServer, create_app
from slmops.serve.assemble import model_holder
from slmops.serve.keys import KeyRing
from slmops.text import pii
from tests.tiny_chat import build_chat_model

needs_engine = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("gguf") is None,
    reason="the engine extra is not installed: pip install -c constraints.txt -e '.[engine]' "
    "(llama-cpp-python[server] 0.3.36 builds llama.cpp from source; see the README's engine section for the cost)",
)
KEY = "sk-engine-test"
RAW = "注文した商品が届きません。連絡先は taro@example.com です"
USER = [{"role": "user", "content": RAW}]
MASKED = [{"role": "user", "content": pii.mask(RAW, ner=False)}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """llama.cpp's OpenAI server on a free port, serving ``tiny-base`` and ``other`` (another random model)."""
    from slmops.export.gguf import write_gguf

    root = tmp_path_factory.mktemp("engine")
    models = []
    for alias, seed in (("tiny-base", 0), ("other", 1)):
        gguf = write_gguf(build_chat_model(root / alias, seed=seed), root / f"{alias}.gguf")
        models.append({"model": str(gguf), "model_alias": alias, "n_ctx": 256, "n_threads": 1, "logits_all": True})
    port = _free_port()
    config = root / "engine.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "models": models}))
    log = (root / "engine.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp's server did not start: {(root / 'engine.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield {"url": url, "direct": openai.OpenAI(base_url=url, api_key="none", max_retries=0)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
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


@needs_engine
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


@needs_engine
def test_a_stream_is_the_engines_answer_piece_by_piece(engine, front):
    expected = direct(engine, "tiny-base", max_tokens=12).choices[0].message.content
    chunks = list(
        front["client"].chat.completions.create(model="student", messages=USER, max_completion_tokens=12, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    row = load_jsonl(front["log"])[-1]
    assert row["stream"] is True and "[EMAIL]" in row["input"]


@needs_engine
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


@needs_engine
def test_an_adapter_name_is_passed_through_to_the_engine(engine, front):
    assert [m.id for m in front["client"].models.list().data] == ["student", "other"]
    expected = {name: direct(engine, name, max_tokens=10).choices[0].message.content for name in ("tiny-base", "other")}
    assert expected["tiny-base"] != expected["other"]
    answer = front["client"].chat.completions.create(model="other", messages=USER, max_completion_tokens=10)
    assert (answer.choices[0].message.content, answer.model) == (expected["other"], "other")


@needs_engine
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


@needs_engine
def test_a_prompt_the_engine_refuses_gets_its_4xx(front):
    long = [{"role": "user", "content": "届きません " * 300}]  # over the engine's 256-token window
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
