"""Dynamic batching: greedy requests that wait while the model is busy are generated together, in one call.

Usage:
    batcher = Batcher(max_batch_size=8).start()
    completion = batcher.generate(model, messages, max_tokens=96)   # blocks; called from many threads
    batcher.stop()

One worker thread owns generation. It takes the oldest waiting request plus every other waiting request
that can share its ``generate`` call (greedy, same model, each prompt + the batch's longest budget inside the
context window, same ``stop`` and ``logprobs``), up to ``max_batch_size``, and never waits for more to
arrive: a lone request runs at once, and under load the batch is whatever queued during the previous one.
Sampled requests (temperature > 0) run alone, so a seed still reproduces its answer. Each answer is cut
at its own ``max_tokens``.

Greedy answers in a batch equal one-by-one answers for a float model. For an int8 model with dynamically
quantised activations the scale is computed over the whole batch, so a rare answer can differ in a token
(``benchmarks/serve_load.py`` reports how often); ``serve.max_batch_size: 1`` turns batching off.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from slmops.inference.chat_model import ChatModel, Completion


@dataclass
class Job:
    model: ChatModel
    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    max_time: float | None = None
    scores: bool = False
    stop: list[str] | None = None
    logprobs: int | None = None
    prompt_ids: list[int] = field(default_factory=list)  # the encoded prompt (set by ``generate``)
    result: Future = field(default_factory=Future)
    sink: queue.Queue | None = None  # a streamed request's token ids, step by step (``ContinuousBatcher.stream``)
    cancelled: bool = False  # the client went away: the step loop retires the row at its next step

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def batchable(self) -> bool:
        return self.temperature == 0.0


class Batcher:
    def __init__(self, max_batch_size: int = 8, on_batch=None):
        self.max_batch_size = max_batch_size
        self.on_batch = on_batch or (lambda size: None)  # told each batch's size (a metric)
        self._queue: queue.Queue[Job] = queue.Queue()
        self._held: deque[Job] = deque()  # taken from the queue but not fit into the last batch: go first
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)

    def start(self) -> Batcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish what is queued, then end the worker (the server stops taking requests first)."""
        self._stopped.set()
        self._thread.join(timeout=30)

    def generate(self, model: ChatModel, messages: list[dict[str, str]], max_tokens: int, **kwargs) -> Completion:
        """The answer to one conversation; raises what generating it raised (e.g. ``ContextWindowExceeded``)."""
        job = Job(model, messages, max_tokens, **kwargs)
        job.prompt_ids = model.checked(messages, max_tokens)  # a prompt that does not fit fails here
        self._queue.put(job)
        return job.result.result()

    def stream(self, model: ChatModel, messages: list[dict[str, str]], max_tokens: int, **kwargs):
        """A streamed answer generates alone (``ChatModel.chat_stream``): text pieces, then its ``Completion``."""
        return model.chat_stream(messages, max_tokens, **kwargs)

    def _next(self, wait_s: float | None) -> Job | None:
        if self._held:
            return self._held.popleft()
        try:
            return self._queue.get(timeout=wait_s) if wait_s else self._queue.get_nowait()
        except queue.Empty:
            return None

    def _run(self) -> None:
        while True:
            first = self._next(wait_s=0.2)
            if first is None:
                if self._stopped.is_set():
                    return
                continue
            batch = [first]
            if first.batchable:
                waiting = list(iter(lambda: self._next(wait_s=None), None))
                for job in waiting:
                    if len(batch) < self.max_batch_size and self._fits(batch, job):
                        batch.append(job)
                    else:
                        self._held.append(job)  # keeps its place: first in the next round
            self._generate(batch)

    @staticmethod
    def _fits(batch: list[Job], job: Job) -> bool:
        first = batch[0]
        same = (job.model, job.max_time, job.stop, job.logprobs) == (
            first.model,
            first.max_time,
            first.stop,
            first.logprobs,
        )
        if not job.batchable or not same:
            return False
        longest = max(j.max_tokens for j in [*batch, job])  # every row generates up to the longest budget
        return all(j.prompt_tokens + longest <= job.model.context_window for j in [*batch, job])

    def _generate(self, batch: list[Job]) -> None:
        first = batch[0]
        try:
            completions = first.model.chat_batch(
                [job.messages for job in batch],
                [job.max_tokens for job in batch],
                first.temperature,
                first.top_p,
                first.seed,
                first.max_time,
                scores=any(job.scores for job in batch),
                stop=first.stop,
                logprobs=first.logprobs,
            )
        except Exception as err:  # handed to every waiting request; the worker carries on
            for job in batch:
                job.result.set_exception(err)
            return
        self.on_batch(len(batch))
        for job, completion in zip(batch, completions, strict=True):
            job.result.set_result(completion)
