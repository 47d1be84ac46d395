"""The server as the official ``openai`` Python client sees it: each feature it sends is honoured, or refused
with a 400 naming the field. One test per feature, streaming included, against a real HTTP server."""

from __future__ import annotations

import openai
import pytest

from slmops.config import ServeConfig
from slmops.inference.chat_model import ChatModel
from slmops.io import load_jsonl
from slmops.serve.app import BackgroundServer, create_app
from slmops.serve.routes.chat import _format_violation
from slmops.serve.schemas import ResponseFormat

USER = [{"role": "user", "content": "注文した商品が届きません"}]


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    log = tmp_path_factory.mktemp("openai") / "inference.jsonl"
    app = create_app(ChatModel.load(tiny_models["onnx"]), "tiny", log, ServeConfig(max_tokens_cap=32))
    with BackgroundServer(app) as srv:
        yield {"client": openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0), "log": log}


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return server["client"]


@pytest.fixture(scope="module")
def plain(client) -> str:
    """The greedy answer without a stop string (the random tiny model rambles for all 16 tokens)."""
    answer = client.chat.completions.create(model="tiny", messages=USER, max_completion_tokens=16)
    text = answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "length" and len(text) >= 6
    return text


def test_stop_string_and_list_end_the_answer_before_the_stop(client, plain):
    stop = plain[3:5]
    expected = plain[: plain.find(stop)]
    for given in (stop, ["never-in-the-answer", stop]):
        answer = client.chat.completions.create(model="tiny", messages=USER, max_completion_tokens=16, stop=given)
        assert answer.choices[0].message.content == expected
        assert answer.choices[0].finish_reason == "stop"


def test_stop_in_a_stream_is_never_sent(client, plain):
    stop = plain[3:5]
    chunks = list(
        client.chat.completions.create(model="tiny", messages=USER, max_completion_tokens=16, stop=[stop], stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain[: plain.find(stop)]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_max_completion_tokens_is_the_budget(client, plain):
    answer = client.chat.completions.create(model="tiny", messages=USER, max_completion_tokens=3)
    assert answer.usage.completion_tokens == 3 and answer.choices[0].finish_reason == "length"
    assert plain.startswith(answer.choices[0].message.content)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny", messages=USER, max_completion_tokens=1000)
    assert err.value.param == "max_completion_tokens"


def test_logprobs_and_top_logprobs(client, plain):
    answer = client.chat.completions.create(
        model="tiny", messages=USER, max_completion_tokens=5, logprobs=True, top_logprobs=3
    )
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens == 5
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3 and entry.bytes == list(entry.token.encode())
        assert entry.top_logprobs[0].token == entry.token  # greedy: the chosen token is the likeliest
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob >= entry.top_logprobs[2].logprob
    without = client.chat.completions.create(model="tiny", messages=USER, max_completion_tokens=5)
    assert without.choices[0].logprobs is None


def test_stream_options_include_usage_sends_a_final_usage_chunk(client):
    stream = client.chat.completions.create(
        model="tiny", messages=USER, max_completion_tokens=6, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert all(c.usage is None for c in chunks[:-1])
    alone = client.chat.completions.create(model="tiny", messages=USER, max_completion_tokens=6)
    assert chunks[-1].usage.prompt_tokens == alone.usage.prompt_tokens


def test_a_seed_reproduces_a_sampled_answer(client):
    def ask(seed: int) -> str:
        answer = client.chat.completions.create(
            model="tiny", messages=USER, max_completion_tokens=12, temperature=1.0, seed=seed
        )
        return answer.choices[0].message.content

    first = ask(11)
    assert ask(11) == first
    assert any(ask(seed) != first for seed in (12, 13, 14))  # the seed is what fixed it


def test_response_format_json_schema_is_checked_on_the_answer(client, server, plain):
    schema = {"type": "object", "properties": {"label": {"enum": ["a", "b"]}}, "required": ["label"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "triage", "schema": schema}}
    with pytest.raises(openai.UnprocessableEntityError) as err:  # the untrained model does not write JSON
        client.chat.completions.create(
            model="tiny", messages=USER, max_completion_tokens=16, stop=plain[3:5], response_format=response_format
        )
    assert err.value.param == "response_format" and "not JSON" in err.value.message
    assert load_jsonl(server["log"])[-1]["status"] == 422
    cut = client.chat.completions.create(  # cut by the budget: sent as it is, and the client sees "length"
        model="tiny", messages=USER, max_completion_tokens=4, response_format=response_format
    )
    assert cut.choices[0].finish_reason == "length"
    checked = ResponseFormat.model_validate(response_format)
    assert _format_violation('{"label": "a"}', checked) is None
    assert "label" in _format_violation('{"label": "c"}', checked)
    assert "required" in _format_violation("{}", checked)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"n": 2}, "n"),
        ({"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}, "audio"),
        ({"modalities": ["audio"]}, "modalities"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"extra_body": {"guided_json": {"type": "object"}}}, "guided_json"),  # vLLM's, unknown here
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,x"}}]}
                ]
            },
            "messages.0.content.0.type",
        ),
    ],
)
def test_unsupported_fields_get_a_400_naming_them(client, extra, param):
    request = {"model": "tiny", "messages": USER, "max_completion_tokens": 4} | extra
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**request)
    assert err.value.param == param


def test_text_content_parts_and_the_developer_role_are_understood(client):
    messages = [
        {"role": "developer", "content": "日本語で答えてください"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "注文した商品が"}, {"type": "text", "text": "届きません"}],
        },
    ]
    answer = client.chat.completions.create(model="tiny", messages=messages, max_completion_tokens=4)
    # The same conversation as a system message and one plain string: the model read the same prompt.
    plain = [
        {"role": "system", "content": "日本語で答えてください"},
        {"role": "user", "content": "注文した商品が届きません"},
    ]
    same = client.chat.completions.create(model="tiny", messages=plain, max_completion_tokens=4)
    assert answer.usage.prompt_tokens == same.usage.prompt_tokens
    assert answer.choices[0].message.content == same.choices[0].message.content  # greedy
    without = client.chat.completions.create(model="tiny", messages=messages[1:], max_completion_tokens=4)
    assert without.usage.prompt_tokens < answer.usage.prompt_tokens  # the developer message was read


def test_a_timeout_is_504_and_ends_a_stream_with_length(tiny_models, tmp_path):
    log = tmp_path / "log.jsonl"
    cfg = ServeConfig(generation_timeout_s=1e-6, max_tokens_cap=32)
    with BackgroundServer(create_app(ChatModel.load(tiny_models["onnx"]), "tiny", log, cfg)) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="tiny", messages=USER, max_completion_tokens=16)
        assert err.value.status_code == 504
        chunks = list(client.chat.completions.create(model="tiny", messages=USER, max_tokens=16, stream=True))
        assert chunks[-1].choices[0].finish_reason == "length"  # an API value: never "time"
    rows = load_jsonl(log)
    assert [r["status"] for r in rows] == [504, 504] and {r["finish_reason"] for r in rows} == {"length"}
