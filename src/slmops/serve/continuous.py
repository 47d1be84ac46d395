"""Continuous batching: a request joins the running batch at the next decode step, never waiting for it to end.

Usage:
    batcher = ContinuousBatcher(max_batch_size=8).start()
    completion = batcher.generate(model, messages, max_tokens=96)   # blocks; called from many threads
    batcher.stop()

One worker thread owns a step-wise decode loop (``inference/stepwise.py``). Each step it
(a) prefills a group of the requests that arrived (those of like prompt length, ``prefill_group``) and merges
    their KV cache into the running batch, up to ``max_batch_size`` rows;
(b) runs one decode step for every running row;
(c) appends each row's token (``Row.tokens``);
(d) retires the rows that emitted EOS, a stop string, their own ``max_tokens`` or ran past their ``max_time``,
    answers them and drops their cache rows.
Greedy rows equal their one-by-one answers for a float model; a sampled row draws from its own generator, so
a ``seed`` reproduces its answer whatever else runs beside it. Logprobs, token probabilities, usage and
finish reasons are built as ``ChatModel.chat_batch`` builds them. Models without a mergeable KV cache (the
ONNX Runtime GenAI form) go to a dynamic ``Batcher`` (``batcher.py``) instead.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from slmops.inference.chat_model import ChatModel, Completion, add_logprobs, add_token_probs, finish
from slmops.inference.stepwise import STEPPABLE, Picker, StepDecoder
from slmops.serve.batcher import Batcher, Job


@dataclass
class Row:
    """One running request: its job, the tokens chosen so far and (if asked for) each step's raw logits."""

    job: Job
    generator: object
    started: float = field(default_factory=time.perf_counter)
    tokens: list[int] = field(default_factory=list)
    logits: list = field(default_factory=list)
    timed_out: bool = False

    @property
    def keeps_logits(self) -> bool:
        return self.job.scores or self.job.logprobs is not None


class ContinuousBatcher:
    def __init__(self, max_batch_size: int = 8, on_batch=None):
        self.max_batch_size = max_batch_size
        self.on_batch = on_batch or (lambda size: None)  # told how many requests joined together (a metric)
        self.dynamic = Batcher(max_batch_size, on_batch)  # for models that cannot decode step by step
        self._queue: queue.Queue[Job] = queue.Queue()
        self._held: deque[Job] = deque()  # waiting for a free row, or for the running batch of another model
        self._rows: list[Row] = []
        self._decoder: StepDecoder | None = None
        self._picker: Picker | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="continuous-batcher", daemon=True)

    def start(self) -> ContinuousBatcher:
        self.dynamic.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish what is queued and running, then end the worker (the server stops taking requests first)."""
        self._stopped.set()
        self._thread.join(timeout=30)
        self.dynamic.stop()

    def generate(self, model: ChatModel, messages: list[dict[str, str]], max_tokens: int, **kwargs) -> Completion:
        """The answer to one conversation; raises what generating it raised (e.g. ``ContextWindowExceeded``)."""
        # Multi-LoRA views switch their adapter per generation (ChatModel.generating): the dynamic batcher's
        # whole-batch generations keep one adapter per batch, the step loop would not.
        multi_lora = getattr(model, "adapter", None) is not None or bool(getattr(model, "adapters", None))
        if getattr(model, "backend", None) not in STEPPABLE or multi_lora:
            return self.dynamic.generate(model, messages, max_tokens, **kwargs)
        job = Job(model, messages, max_tokens, **kwargs)
        job.prompt_ids = model.checked(messages, max_tokens)  # a prompt that does not fit fails here
        self._queue.put(job)
        return job.result.result()

    def stream(self, model: ChatModel, messages: list[dict[str, str]], max_tokens: int, **kwargs):
        """The answer's text piece by piece as its row decodes in the running batch, then its ``Completion``
        (``ChatModel.chat_stream``'s contract: a prompt that does not fit raises at the first ``next``, a stop
        string is never sent). Models the step loop cannot run stream alone, as with the dynamic batcher."""
        multi_lora = getattr(model, "adapter", None) is not None or bool(getattr(model, "adapters", None))
        if getattr(model, "backend", None) not in STEPPABLE or multi_lora:
            yield from self.dynamic.stream(model, messages, max_tokens, **kwargs)
            return
        job = Job(model, messages, max_tokens, **kwargs)
        job.prompt_ids = model.checked(messages, max_tokens)
        job.sink = queue.Queue()
        job.result.add_done_callback(lambda _: job.sink.put(None))  # answered or failed: the stream ends
        self._queue.put(job)
        try:
            yield from _pieces(job)
        finally:
            job.cancelled = True  # a client that went away frees its row; a finished row is gone already

    def queued(self) -> int:
        """Requests waiting to join the running batch (a snapshot)."""
        return self._queue.qsize() + len(self._held)

    def decoded(self) -> list[int]:
        """Tokens decoded so far by each running row, oldest row first (a snapshot)."""
        return [len(row.tokens) for row in list(self._rows)]

    def _run(self) -> None:
        while True:
            if not self._rows and not self._held:
                try:
                    self._held.append(self._queue.get(timeout=0.2))
                except queue.Empty:
                    if self._stopped.is_set():
                        return
                    continue
            self._admit()
            if self._rows:
                self._step()

    def _admit(self) -> None:
        """Prefill one group of the waiting requests that fit (same model, free rows; ``prefill_group``) and add
        them to the running batch. The rest wait for the next step, so running rows are stalled by one group's
        prefill at a time."""
        waiting = [*self._held, *iter(self._queue_nowait, None)]
        model = self._decoder.chat_model if self._rows else waiting[0].model if waiting else None
        room = self.max_batch_size - len(self._rows)
        fits = [job for job in waiting if job.model is model][:room]
        joining = [fits[i] for i in prefill_group([job.prompt_ids for job in fits])] if fits else []
        self._held = deque(job for job in waiting if not any(job is j for j in joining))
        if not joining:
            return
        if not self._rows:
            self._decoder, self._picker = StepDecoder(model), Picker(model)
        rows = [Row(job, _generator(job, model)) for job in joining]
        try:
            logits = self._forward(lambda: self._decoder.add([job.prompt_ids for job in joining]))
        except Exception as err:  # handed to the joining requests; the running ones carry on
            for job in joining:
                job.result.set_exception(err)
            return
        self.on_batch(len(joining))
        self._rows += rows
        self._advance(rows, logits)

    def _queue_nowait(self) -> Job | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def _step(self) -> None:
        try:
            logits = self._forward(lambda: self._decoder.step([row.tokens[-1] for row in self._rows]))
        except Exception as err:  # handed to every running request; the worker carries on
            for row in self._rows:
                row.job.result.set_exception(err)
            self._rows = []
            self._decoder.reset()
            return
        self._advance(self._rows, logits)

    def _forward(self, call):
        import torch

        with self._decoder.chat_model.lock(), torch.inference_mode():
            return call()

    def _advance(self, rows: list[Row], logits) -> None:
        """Append each row's next token (``logits`` row i is ``rows[i]``'s), then retire the finished rows."""
        import torch

        greedy = logits.argmax(-1).tolist() if self._picker.penalty == 1.0 else None
        for i, row in enumerate(rows):
            job = row.job
            if row.keeps_logits:
                row.logits.append(logits[i : i + 1].clone())
            if greedy is not None and job.temperature <= 0:
                row.tokens.append(greedy[i])
            else:
                history = job.prompt_ids + row.tokens
                row.tokens.append(self._picker.pick(logits[i], history, job.temperature, job.top_p, row.generator))
            if job.sink is not None:
                job.sink.put(row.tokens[-1])
        done = [row for row in self._rows if self._finished(row)]
        if not done:
            return
        self._decoder.keep([i for i, row in enumerate(self._rows) if not any(row is d for d in done)])
        self._rows = [row for row in self._rows if not any(row is d for d in done)]
        with torch.inference_mode():
            for row in done:
                self._answer(row)

    def _finished(self, row: Row) -> bool:
        job, tokens = row.job, row.tokens
        if not tokens:
            return False
        if job.cancelled:
            return True
        if tokens[-1] == job.model.tokenizer.eos_token_id or len(tokens) >= job.max_tokens:
            return True
        if job.stop:
            text = job.model.tokenizer.decode(tokens, skip_special_tokens=True)
            if any(s in text for s in job.stop):
                return True
        row.timed_out = job.max_time is not None and time.perf_counter() - row.started >= job.max_time
        return row.timed_out

    def _answer(self, row: Row) -> None:
        import torch

        job = row.job
        try:
            completion = finish(
                job.model.tokenizer, job.prompt_ids, row.tokens, row.timed_out, job.max_tokens, job.stop
            )
            ids = torch.tensor(row.tokens)
            if job.scores:
                add_token_probs(completion, ids, row.logits, 0)
            if job.logprobs is not None:
                add_logprobs(job.model.tokenizer, completion, ids, row.logits, 0, job.logprobs)
        except Exception as err:
            job.result.set_exception(err)
            return
        job.result.set_result(completion)


PAD_WASTE = 0.1  # a prefill group's padding may add at most this share to its real prompt tokens


def prefill_group(prompts: list[list[int]], waste: float = PAD_WASTE) -> list[int]:
    """Indices of the prompts to prefill together: the first (the oldest request) and each later one that keeps
    the group's padded cells (rows x longest prompt) within ``1 + waste`` times its real tokens. Prefill is
    compute-bound: on CPU a batch of prompts costs what they cost one by one (int4 at 0.5B shapes, 2 threads:
    3.0 ms a token alone, 3.0 in 8 rows of 100), so padding is pure loss there (it made the serving benchmark's
    8-client prefill 4.3 ms a token); on a GPU, prompts of like length still go together."""
    group = [0]
    for i in range(1, len(prompts)):
        trial = [*group, i]
        width = max(len(prompts[j]) for j in trial)
        if width * len(trial) <= (1 + waste) * sum(len(prompts[j]) for j in trial):
            group = trial
    return group


def _generator(job: Job, model: ChatModel):
    """A sampled row's own random generator (seeded when the request has a seed); None for greedy rows."""
    if job.temperature <= 0:
        return None
    import torch

    generator = torch.Generator(device=model.device or "cpu")
    if job.seed is not None:
        generator.manual_seed(job.seed)
    else:
        generator.seed()
    return generator


def _pieces(job: Job):
    """Decode a streamed row's tokens as they arrive and send the new text once it is whole (not a split UTF-8
    character) and holds no stop string, then the ``Completion`` (raising what generating it raised). New text
    is the decode of the tokens since the last piece's start minus that of the tokens already sent (vLLM's
    incremental detokenizer). Decoding the whole answer each time is not prefix-stable (148 of 200 random
    40-token answers under the demo's byte-level tokenizer), and a diff against it sent nothing more once the
    prefix changed."""
    from slmops.inference.decoding import StopHolder

    tokenizer, holder = job.model.tokenizer, StopHolder(job.stop or [])
    tokens: list[int] = []
    start = sent = 0  # tokens[start:sent] were sent; tokens[sent:] not yet
    while (token := job.sink.get()) is not None:
        tokens.append(token)
        before = tokenizer.decode(tokens[start:sent], skip_special_tokens=True)
        text = tokenizer.decode(tokens[start:], skip_special_tokens=True)
        if len(text) > len(before) and not text.endswith("\ufffd"):
            start, sent = sent, len(tokens)
            if ready := holder.feed(text[len(before) :]):
                yield ready
    completion = job.result.result()
    before = tokenizer.decode(tokens[start:sent], skip_special_tokens=True)
    text = tokenizer.decode(tokens[start:], skip_special_tokens=True)
    if tail := holder.feed(text[len(before) :]) + holder.flush():
        yield tail
    yield completion
