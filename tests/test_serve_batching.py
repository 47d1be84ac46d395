"""Dynamic batching: requests that wait while the model is busy share one generate call and get the same
answers they would have got alone."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from slmops.config import ServeConfig
from slmops.inference.chat_model import ChatModel
from slmops.serve.app import BackgroundServer, create_app
from slmops.serve.batcher import Batcher

PROMPTS = [f"{topic}について{i}" for i, topic in enumerate(["請求", "配送", "アカウント", "不具合", "解約", "その他"])]


@pytest.fixture(scope="module")
def model(tiny_models) -> ChatModel:
    return ChatModel.load(tiny_models["model"])  # float weights: batched greedy must equal one-by-one exactly


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _wait_until(condition) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)  # polling interval


class HeldLock:
    """Holds a model's generation lock for the test; ``waiting`` is set once the batcher's worker is inside
    ``generate`` and blocked on it (so whatever is sent next must queue behind it)."""

    def __init__(self, model: ChatModel):
        self.model, self.inner, self.waiting = model, model._lock, threading.Event()

    def __enter__(self) -> HeldLock:
        self.inner.acquire()
        self.model._lock = _Spy(self)
        return self

    def __exit__(self, *exc) -> None:
        self.inner.release()


class _Spy:
    """What ``with model._lock`` enters while the test holds the lock."""

    def __init__(self, held: HeldLock):
        self.held = held

    def __enter__(self):
        self.held.waiting.set()
        self.held.inner.acquire()
        self.held.model._lock = self.held.inner  # later generate calls use the plain lock again

    def __exit__(self, *exc) -> None:
        self.held.inner.release()


def _queued_while_busy(model: ChatModel, batcher: Batcher, jobs: list[tuple[str, int]]) -> list:
    """The first of ``jobs`` (prompt, max_tokens) starts alone and the rest queue behind it; then all run."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        with HeldLock(model) as held:  # the worker's first generate call waits here until the rest are queued
            futures = [pool.submit(batcher.generate, model, _user(jobs[0][0]), jobs[0][1])]
            assert held.waiting.wait(10)  # the worker took it and is inside generate, waiting for the lock
            futures += [pool.submit(batcher.generate, model, _user(text), budget) for text, budget in jobs[1:]]
            _wait_until(lambda: batcher._queue.qsize() == len(jobs) - 1)
        return [f.result(timeout=60) for f in futures]


def test_queued_requests_are_generated_together_and_answer_as_alone(model):
    sizes: list[int] = []
    batcher = Batcher(max_batch_size=8, on_batch=sizes.append).start()
    jobs = [(text, 4 + 3 * i) for i, text in enumerate(PROMPTS)]  # different budgets in one batch
    try:
        answers = _queued_while_busy(model, batcher, jobs)
    finally:
        batcher.stop()
    assert sorted(sizes) == [1, len(jobs) - 1]  # the first ran alone; the rest queued behind it, together
    for (text, budget), answer in zip(jobs, answers, strict=True):
        alone = model.chat(_user(text), max_tokens=budget)
        assert answer.text == alone.text and answer.completion_tokens == alone.completion_tokens <= budget
        assert answer.finish_reason == alone.finish_reason


def test_batches_respect_the_size_cap_and_the_context_window(model):
    sizes: list[int] = []
    batcher = Batcher(max_batch_size=2, on_batch=sizes.append).start()
    short, long_ = PROMPTS[0], "長い問い合わせです。" * 8
    room = model.room_for(_user(short))  # the short prompt may use the whole window...
    assert len(model.encode(_user(long_))) + room > model.context_window  # ...which leaves no room beside it
    jobs = [(PROMPTS[1], 4), (short, room), (long_, 4), (PROMPTS[2], 4), (PROMPTS[3], 4)]
    try:
        answers = _queued_while_busy(model, batcher, jobs)
    finally:
        batcher.stop()
    assert max(sizes) == 2 and sum(sizes) == len(jobs)
    for (text, budget), answer in zip(jobs, answers, strict=True):
        assert answer.text == model.chat(_user(text), max_tokens=budget).text


def test_sampled_requests_run_alone_so_a_seed_still_reproduces(model, tmp_path):
    app = create_app(model, "tiny", None, ServeConfig(max_in_flight=32))
    with BackgroundServer(app) as srv:
        url = f"http://127.0.0.1:{srv.port}/v1/chat/completions"

        def ask(text: str, **extra) -> httpx.Response:
            body = {"model": "tiny", "messages": _user(text), "max_tokens": 12, **extra}
            return httpx.post(url, json=body, timeout=60)

        alone = ask("配送の件", temperature=1.0, seed=3).json()["choices"][0]["message"]["content"]
        batcher = app.state.server.batcher
        with ThreadPoolExecutor(12) as pool:
            with HeldLock(model) as held:  # everything sent while the first generates must queue
                futures = [pool.submit(ask, PROMPTS[0])]
                assert held.waiting.wait(10)
                futures += [
                    pool.submit(ask, "配送の件", temperature=1.0, seed=3)
                    if i == 5
                    else pool.submit(ask, PROMPTS[i % 6])
                    for i in range(1, 12)
                ]
                _wait_until(lambda: batcher._queue.qsize() == 11)
            responses = [f.result(timeout=120) for f in futures]
        assert all(r.status_code == 200 for r in responses)
        assert responses[5].json()["choices"][0]["message"]["content"] == alone
        metrics = httpx.get(f"http://127.0.0.1:{srv.port}/metrics").text
        batches = float(re.search(r"^slmops_batch_size_count (\S+)$", metrics, re.M).group(1))
        answered = float(re.search(r"^slmops_batch_size_sum (\S+)$", metrics, re.M).group(1))
        # 13 requests (the lone one first); the 10 queued greedy ones share batches of up to 8: at most
        # alone + first + sampled + 2 greedy batches. Without batching there would be 13 generate calls.
        assert answered == 13 and batches <= 5
