"""Multi-LoRA on our torch form (vLLM's ``--lora-modules name=path``): one base loaded once, each adapter served
under its own model name, each answering as that adapter's merged model does, through the official client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from slmops.config import ServeConfig
from slmops.inference.chat_model import ChatModel
from slmops.inference.lora import parse_lora_modules, with_lora_modules
from slmops.io import load_jsonl
from slmops.serve.app import BackgroundServer, create_app
from slmops.serve.assemble import model_holder
from tests.tiny_chat import build_chat_model, merged, random_lora

USER = [{"role": "user", "content": "注文した商品が届きません"}]


@pytest.fixture(scope="module")
def lora(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("lora")
    base = build_chat_model(root / "base")
    adapters = {name: random_lora(base, root / name, seed) for name, seed in (("billing", 1), ("shipping", 2))}
    expected = {
        name: ChatModel.load(merged(base, path, root / f"{name}_merged"), device="cpu").chat(USER, 16).text
        for name, path in adapters.items()
    }
    expected["tiny"] = ChatModel.load(base, device="cpu").chat(USER, 16).text
    cfg = ServeConfig(lora_modules={name: str(path) for name, path in adapters.items()})
    log = root / "inference.jsonl"
    app = create_app(model_holder("tiny", model_path=base, cfg=cfg), "tiny", log, cfg)
    with BackgroundServer(app) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0)
        yield {"client": client, "expected": expected, "log": log, "base": base}


def test_models_lists_the_base_then_each_adapter(lora):
    assert [m.id for m in lora["client"].models.list().data] == ["tiny", "billing", "shipping"]


def test_each_adapter_answers_as_its_merged_model_and_they_differ(lora):
    expected = lora["expected"]
    assert len(set(expected.values())) == 3  # the adapters change the answer, each its own way
    for name, text in expected.items():
        answer = lora["client"].chat.completions.create(model=name, messages=USER, max_completion_tokens=16)
        assert answer.choices[0].message.content == text, name
        assert answer.model == name
    assert [row["model"] for row in load_jsonl(lora["log"])][-3:] == list(expected)


def test_adapters_asked_at_once_each_get_their_own_answer(lora):
    names = ["billing", "shipping", "tiny"] * 2  # within serve.max_in_flight (8)

    def ask(name: str) -> str:
        answer = lora["client"].chat.completions.create(model=name, messages=USER, max_completion_tokens=16)
        return answer.choices[0].message.content

    with ThreadPoolExecutor(len(names)) as pool:
        answers = list(pool.map(ask, names))
    assert answers == [lora["expected"][name] for name in names]


def test_a_stream_for_an_adapter_is_that_adapters_answer(lora):
    chunks = lora["client"].chat.completions.create(
        model="shipping", messages=USER, max_completion_tokens=16, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == lora["expected"]["shipping"]


def test_an_unknown_model_name_gets_404_listing_what_is_served(lora):
    with pytest.raises(openai.NotFoundError, match="'billing', 'shipping'"):
        lora["client"].chat.completions.create(model="refunds", messages=USER, max_completion_tokens=4)


def test_lora_modules_are_name_equals_path():
    assert parse_lora_modules(["a=/x/a", "b=/x/b=c"]) == {"a": "/x/a", "b": "/x/b=c"}
    for bad in (["a"], ["=/x"], ["a="], ["a=/x", "a=/y"]):
        with pytest.raises(ValueError, match="--lora-modules"):
            parse_lora_modules(bad)


def test_a_missing_adapter_folder_fails_naming_it(lora, tmp_path):
    with pytest.raises(ValueError, match="serve.lora_modules.gone"):
        with_lora_modules(ChatModel.load(lora["base"], device="cpu"), {"gone": str(tmp_path / "nothing")})
