"""Continuous batching: a request joins the running batch at the next decode step, finishes while a longer one
is still decoding, and gets the answer it would have got alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from slmops.config import ServeConfig
from slmops.inference.chat_model import ChatModel
from slmops.serve.app import BackgroundServer, create_app
from slmops.serve.continuous import ContinuousBatcher, prefill_group

PROMPTS = [f"{topic}について{i}" for i, topic in enumerate(["請求", "配送", "アカウント", "不具合", "解約", "その他"])]
LONG = 150  # the long request's budget; the random tiny model does not emit EOS in it for the prompt chosen below


@pytest.fixture(scope="module", params=["model", "onnx"])  # transformers and ONNX Runtime (optimum, KV cache)
def model(request, tiny_models) -> ChatModel:
    return ChatModel.load(tiny_models[request.param])  # float weights: batched greedy must equal one-by-one


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _rambling(model: ChatModel) -> str:
    """A prompt whose greedy answer runs the whole ``LONG`` budget (no early EOS)."""
    for text in PROMPTS:
        if model.chat(_user(text), max_tokens=LONG).completion_tokens == LONG:
            return text
    raise AssertionError("every prompt stopped early")


def _wait_until(condition, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)  # polling interval


def test_a_short_request_finishes_while_a_long_one_is_still_decoding(model):
    long_text, short_text = _rambling(model), PROMPTS[-1]
    batcher = ContinuousBatcher(max_batch_size=8).start()
    try:
        with ThreadPoolExecutor(2) as pool:
            long_ = pool.submit(batcher.generate, model, _user(long_text), LONG)
            _wait_until(lambda: batcher.decoded() and batcher.decoded()[0] >= 10)  # the long one is under way
            short = pool.submit(batcher.generate, model, _user(short_text), 3).result(timeout=60)
            long_done_then, long_tokens_then = long_.done(), batcher.decoded()
            long_answer = long_.result(timeout=120)
    finally:
        batcher.stop()
    assert not long_done_then and 10 < long_tokens_then[0] < LONG  # it was still decoding when the short ended
    assert short.completion_tokens == 3
    for text, budget, answer in ((long_text, LONG, long_answer), (short_text, 3, short)):
        alone = model.chat(_user(text), max_tokens=budget)
        assert (answer.text, answer.completion_tokens, answer.finish_reason) == (
            alone.text,
            alone.completion_tokens,
            alone.finish_reason,
        )


def test_staggered_greedy_requests_answer_as_alone_with_stop_and_logprobs(model):
    """Requests join at different steps with different budgets, stop strings and logprobs; each answer (text,
    usage, finish reason, token logprobs) is the one-by-one answer."""
    plain = model.chat(_user(PROMPTS[1]), max_tokens=16).text
    jobs = [(text, 6 + 5 * i, {}) for i, text in enumerate(PROMPTS)]
    jobs += [(PROMPTS[1], 16, {"stop": [plain[3:5]]}), (PROMPTS[2], 12, {"logprobs": 2, "scores": True})]
    batcher = ContinuousBatcher(max_batch_size=4).start()  # fewer rows than requests: some wait for a free row
    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            futures = []
            for text, budget, extra in jobs:
                futures.append(pool.submit(batcher.generate, model, _user(text), budget, **extra))
                time.sleep(0.01)  # arrive while others decode
            answers = [f.result(timeout=120) for f in futures]
    finally:
        batcher.stop()
    for (text, budget, extra), answer in zip(jobs, answers, strict=True):
        alone = model.chat(_user(text), max_tokens=budget, **extra)
        assert answer.model_dump(exclude={"logprobs", "min_token_prob", "mean_token_prob"}) == alone.model_dump(
            exclude={"logprobs", "min_token_prob", "mean_token_prob"}
        )
        if "logprobs" in extra:
            assert [e["token"] for e in answer.logprobs] == [e["token"] for e in alone.logprobs]
            assert [e["logprob"] for e in answer.logprobs] == pytest.approx([e["logprob"] for e in alone.logprobs])
            assert answer.min_token_prob == pytest.approx(alone.min_token_prob)
    assert answers[len(PROMPTS)].finish_reason == "stop"


def test_a_seed_reproduces_a_sampled_answer_whatever_runs_beside_it(model):
    batcher = ContinuousBatcher(max_batch_size=8).start()
    sampled = {"temperature": 1.0, "seed": 7}
    try:
        alone = batcher.generate(model, _user(PROMPTS[0]), 20, **sampled)
        with ThreadPoolExecutor(4) as pool:
            others = [pool.submit(batcher.generate, model, _user(t), 30) for t in PROMPTS[1:4]]
            time.sleep(0.01)
            beside = pool.submit(batcher.generate, model, _user(PROMPTS[0]), 20, **sampled).result(timeout=60)
            [f.result(timeout=60) for f in others]
        other_seed = [batcher.generate(model, _user(PROMPTS[0]), 20, temperature=1.0, seed=s).text for s in (8, 9)]
    finally:
        batcher.stop()
    assert beside.text == alone.text
    assert any(text != alone.text for text in other_seed)  # the seed is what fixed it


def test_through_the_server_the_short_answer_comes_back_first(tiny_models):
    """The official ``openai`` client against the real HTTP server (continuous batching is the default)."""
    model = ChatModel.load(tiny_models["onnx"])
    long_text = _rambling(model)
    app = create_app(model, "tiny", None, ServeConfig(max_tokens_cap=LONG))
    finished: dict[str, float] = {}
    with BackgroundServer(app) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0)
        batcher = app.state.server.batcher
        assert isinstance(batcher, ContinuousBatcher)

        def ask(name: str, text: str, budget: int):
            answer = client.chat.completions.create(model="tiny", messages=_user(text), max_completion_tokens=budget)
            finished[name] = time.monotonic()
            return answer

        with ThreadPoolExecutor(2) as pool:
            long_ = pool.submit(ask, "long", long_text, LONG)
            _wait_until(lambda: batcher.decoded() and batcher.decoded()[0] >= 10)
            short = pool.submit(ask, "short", PROMPTS[-1], 3).result(timeout=60)
            long_answer = long_.result(timeout=120)
    assert finished["short"] < finished["long"]
    assert long_answer.usage.completion_tokens == LONG and short.usage.completion_tokens == 3
    assert long_answer.choices[0].message.content == model.chat(_user(long_text), max_tokens=LONG).text
    assert short.choices[0].message.content == model.chat(_user(PROMPTS[-1]), max_tokens=3).text


def test_a_stream_joins_the_running_batch_and_streams_its_alone_answer(model):
    """A streamed request decodes as a row of the running batch (two rows while the long one runs), its pieces
    join to the one-by-one answer, a stop string is never sent, and it ends while the long one still decodes."""
    long_text = _rambling(model)
    plain = model.chat(_user(PROMPTS[1]), max_tokens=24).text
    batcher = ContinuousBatcher(max_batch_size=8).start()
    rows_seen: list[int] = []
    try:
        with ThreadPoolExecutor(1) as pool:
            long_ = pool.submit(batcher.generate, model, _user(long_text), LONG)
            _wait_until(lambda: batcher.decoded() and batcher.decoded()[0] >= 10)
            pieces = []
            for piece in batcher.stream(model, _user(PROMPTS[1]), 24):
                rows_seen.append(len(batcher.decoded()))
                pieces.append(piece)
            long_running_then = not long_.done()
            stopped = list(batcher.stream(model, _user(PROMPTS[1]), 24, stop=[plain[3:5]]))
            long_.result(timeout=120)
    finally:
        batcher.stop()
    *texts, completion = pieces
    alone = model.chat(_user(PROMPTS[1]), max_tokens=24)
    assert "".join(texts) == completion.text == alone.text and len(texts) > 1
    assert (completion.completion_tokens, completion.finish_reason) == (alone.completion_tokens, alone.finish_reason)
    assert max(rows_seen) == 2 and long_running_then  # decoded beside the long row, and done before it
    *stop_texts, stop_completion = stopped
    assert "".join(stop_texts) == stop_completion.text == model.chat(_user(PROMPTS[1]), 24, stop=[plain[3:5]]).text
    assert plain[3:5] not in "".join(stop_texts) and stop_completion.finish_reason == "stop"


def test_a_stream_the_client_leaves_frees_its_row(model):
    batcher = ContinuousBatcher(max_batch_size=8).start()
    try:
        stream = batcher.stream(model, _user(_rambling(model)), LONG)
        next(stream)
        assert batcher.decoded()
        stream.close()  # what the server does when the client disconnects
        _wait_until(lambda: not batcher.decoded(), timeout_s=10)
    finally:
        batcher.stop()


def test_prompts_of_unlike_length_are_prefilled_apart_and_like_ones_together():
    """The oldest request always goes; a later one joins only while padding stays within 10% of the real tokens."""
    short, short2, long_, long2 = [1] * 20, [1] * 21, [1] * 100, [1] * 95
    assert prefill_group([short, long_, short2, long2]) == [0, 2]  # 2 x 21 cells for 41 tokens: in
    assert prefill_group([long_, short, long2, short2]) == [0, 2]  # the short ones would pad 100-wide rows
    assert prefill_group([short]) == [0]
    assert prefill_group([short, long_], waste=5.0) == [0, 1]  # the bound is what kept them apart


def test_requests_queued_together_with_unlike_prompts_answer_as_alone(model):
    """Held back until all are queued, a long prompt and two short ones are admitted in separate prefills (the
    short pair together), and every answer is its one-by-one answer."""
    texts = [PROMPTS[0] * 12, "配送について1", "配送について7"]
    gate, sizes = threading.Event(), []
    batcher = ContinuousBatcher(max_batch_size=8, on_batch=lambda n: (sizes.append(n), gate.wait(30))).start()
    try:
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(batcher.generate, model, _user(PROMPTS[3]), 8)  # holds the worker in on_batch
            _wait_until(lambda: sizes)
            futures = []
            for text in texts:  # queued in this order: the long one is the oldest
                futures.append(pool.submit(batcher.generate, model, _user(text), 8))
                _wait_until(lambda n=len(futures): batcher.queued() == n)
            gate.set()
            answers = [f.result(timeout=60) for f in futures]
            first.result(timeout=60)
    finally:
        batcher.stop()
    assert sizes == [1, 1, 2]  # the long prompt alone, the two short ones together
    for text, answer in zip(texts, answers, strict=True):
        assert answer.text == model.chat(_user(text), max_tokens=8).text
