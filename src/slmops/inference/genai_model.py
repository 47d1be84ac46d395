"""A chat model over an ONNX Runtime GenAI folder (``genai_config.json`` + ``model.onnx``): its C++ decode loop.

Usage:
    model = GenAIChatModel.load(Path("models/student_onnx/genai_int4"))   # or ChatModel.load, which routes here
    completion = model.chat([{"role": "user", "content": "注文が届きません"}], max_tokens=64)

The same interface as ``chat_model.ChatModel`` (``chat``, ``chat_batch``, ``chat_stream``, ``room_for``,
``checked``), so the server, evaluation and parity use it unchanged. The prompt is encoded and the answer
decoded by the folder's transformers tokenizer (the one every other form uses), so token ids, text and counts
match the other forms; GenAI only runs the model and picks tokens. Logprobs and token probabilities come from
the logits GenAI exposes for each step (``get_output("logits")``, before sampling). A ``seed`` is GenAI's
``random_seed``.

Batching: greedy conversations in one ``chat_batch`` call (the server's dynamic batcher, ``serve/batcher.py``)
share one ``og.Generator`` with a row each, right-padded with ``pad_token_id`` (GenAI's own padding convention,
``PadInputs``), so every decode step advances them all; each row is cut at its own EOS, budget, stop string or
``max_time``, and its tokens equal its one-by-one answer. Sampled conversations, and prompts that hold the pad id
(GenAI would mask it), run one after the other. ``og.Engine`` (GenAI's continuous-batching scheduler) is not
used: on CPU it only has its static scheduler (at most 4 rows, a request joins when the whole batch has
finished; its paged, continuous path needs a PagedAttention model, which the builder writes for CUDA/WebGPU only).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from slmops.inference.completion import Completion, check_fits, encode_chat, finish
from slmops.inference.decoding import StopHolder, cut_at_stop, token_logprobs


class GenAIChatModel:
    """An ``onnxruntime_genai.Model`` plus the folder's tokenizer. One generator at a time (a lock), one row or many."""

    def __init__(self, model, tokenizer, path: str, context_window: int, pad_token_id: int):
        self.model, self.tokenizer, self.path = model, tokenizer, path
        self.backend, self.device, self.context_window = "onnxruntime-genai", None, context_window
        self.pad_token_id = pad_token_id
        self.steps = 0  # decode steps run so far (a batched step counts once, whatever its rows)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path | str) -> GenAIChatModel:
        import onnxruntime_genai as og
        from transformers import AutoTokenizer

        config = json.loads((Path(path) / "genai_config.json").read_text())
        return cls(
            og.Model(str(path)),
            AutoTokenizer.from_pretrained(str(path)),
            str(path),
            int(config["model"]["context_length"]),
            int(config["model"]["pad_token_id"]),
        )

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        return encode_chat(self.tokenizer, messages)

    def room_for(self, messages: list[dict[str, str]]) -> int:
        return self.context_window - len(self.encode(messages))

    def checked(self, messages: list[dict[str, str]], max_tokens: int) -> list[int]:
        return check_fits(self.encode(messages), max_tokens, self.context_window)

    def chat(self, messages: list[dict[str, str]], max_tokens: int, *args, **kwargs) -> Completion:
        return self.chat_batch([messages], max_tokens, *args, **kwargs)[0]

    def chat_batch(
        self,
        conversations: list[list[dict[str, str]]],
        max_tokens: int | list[int],
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        max_time: float | None = None,
        scores: bool = False,
        stop: list[str] | None = None,
        logprobs: int | None = None,
    ) -> list[Completion]:
        """As ``ChatModel.chat_batch``; greedy conversations decode together as rows of one generator."""
        limits = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(conversations)
        encoded = [self.checked(messages, limit) for messages, limit in zip(conversations, limits, strict=True)]
        keep_logits = scores or logprobs is not None
        if temperature <= 0 and self._batchable(encoded, limits):
            rows = self._batch_rows(encoded, limits, max_time, stop, keep_logits)
        else:
            rows = [
                _collect(self._steps(ids, limit, temperature, top_p, seed, max_time, stop, keep_logits))
                for ids, limit in zip(encoded, limits, strict=True)
            ]
        completions = []
        for ids, limit, (row, logits, timed_out) in zip(encoded, limits, rows, strict=True):
            completion = finish(self.tokenizer, ids, row, timed_out, limit, stop)
            if keep_logits:
                _add_scores(self.tokenizer, completion, row, logits, scores, logprobs)
            completions.append(completion)
        return completions

    def chat_stream(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_time: float | None = None,
        seed: int | None = None,
        stop: list[str] | None = None,
    ) -> Iterator[str | Completion]:
        """Yield the answer's text piece by piece, then its ``Completion`` (a stop string is never yielded)."""
        ids = self.checked(messages, max_tokens)
        holder, row, sent, timed_out = StopHolder(stop or []), [], "", False
        for token, _, late in self._steps(ids, max_tokens, temperature, top_p, seed, max_time, stop, False):
            row.append(token)
            timed_out = late
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                continue
            if ready := holder.feed(text[len(sent) :]):
                yield ready
            sent = text
        text = self.tokenizer.decode(row, skip_special_tokens=True)
        if text[len(sent) :] and (ready := holder.feed(text[len(sent) :])):
            yield ready
        if tail := holder.flush():
            yield tail
        yield finish(self.tokenizer, ids, row, timed_out, max_tokens, stop)

    def _steps(self, ids, limit, temperature, top_p, seed, max_time, stop, keep_logits):
        """Yield ``(token, logits row or None, timed_out)`` per generated token, holding the lock throughout.

        Ends at EOS (yielded), ``limit`` tokens, a stop string in the decoded answer, or ``max_time`` seconds.
        """
        import numpy as np
        import onnxruntime_genai as og

        with self._lock:
            started = time.perf_counter()
            params = og.GeneratorParams(self.model)
            params.set_search_options(**_search_options(len(ids) + limit, temperature, top_p, seed))
            generator = og.Generator(self.model, params)
            generator.append_tokens(np.asarray([ids], dtype=np.int32))
            row: list[int] = []
            while len(row) < limit:
                generator.generate_next_token()
                self.steps += 1
                token = int(generator.get_next_tokens()[0])
                step_logits = np.array(generator.get_output("logits"))[0, -1] if keep_logits else None
                row.append(token)
                timed_out = max_time is not None and time.perf_counter() - started >= max_time
                yield token, step_logits, timed_out
                if self._ends(row, limit, timed_out, stop) or generator.is_done():
                    return

    def _batch_rows(self, encoded, limits, max_time, stop, keep_logits) -> list[tuple[list[int], list, bool]]:
        """Greedy ``(tokens, logits rows, timed_out)`` per prompt, decoded together as the rows of one generator.

        Rows are right-padded to the longest prompt with ``pad_token_id`` (GenAI masks them and numbers the
        positions of each row from its own start); a finished row is kept in the batch and its tokens ignored.
        """
        import numpy as np
        import onnxruntime_genai as og

        width = max(len(ids) for ids in encoded)
        batch = np.full((len(encoded), width), self.pad_token_id, dtype=np.int32)
        for i, ids in enumerate(encoded):
            batch[i, : len(ids)] = ids
        rows: list[tuple[list[int], list, bool]] = [([], [], False) for _ in encoded]
        running = set(range(len(encoded)))
        with self._lock:
            started = time.perf_counter()
            params = og.GeneratorParams(self.model)
            params.set_search_options(batch_size=len(encoded), **_search_options(width + max(limits), 0.0, 1.0, None))
            generator = og.Generator(self.model, params)
            generator.append_tokens(batch)
            while running and not generator.is_done():
                generator.generate_next_token()
                self.steps += 1
                tokens = generator.get_next_tokens()
                step_logits = _last_logits(generator, encoded) if keep_logits else None
                timed_out = max_time is not None and time.perf_counter() - started >= max_time
                for i in sorted(running):
                    row, logits, _ = rows[i]
                    row.append(int(tokens[i]))
                    if keep_logits:
                        logits.append(step_logits[i])
                    rows[i] = (row, logits, timed_out)
                    if self._ends(row, limits[i], timed_out, stop):
                        running.discard(i)
        return rows

    def _batchable(self, encoded: list[list[int]], limits: list[int]) -> bool:
        """Several prompts, none holding the pad id, and the longest prompt plus the longest budget fit the window."""
        fits = max(map(len, encoded)) + max(limits) <= self.context_window
        return len(encoded) > 1 and fits and not any(self.pad_token_id in ids for ids in encoded)

    def _ends(self, row: list[int], limit: int, timed_out: bool, stop: list[str] | None) -> bool:
        """Whether an answer ends at its last token: EOS, its budget, ``max_time``, or a stop string in its text."""
        if row[-1] == self.tokenizer.eos_token_id or len(row) >= limit or timed_out:
            return True
        return bool(stop) and cut_at_stop(self.tokenizer.decode(row, skip_special_tokens=True), stop)[1]


def _last_logits(generator, encoded: list[list[int]]):
    """Each row's logits for the token just chosen: after the prefill, at the row's own last prompt token (a
    shorter row's last column is padding); after that, GenAI's single new column."""
    import numpy as np

    logits = np.array(generator.get_output("logits"))
    if logits.shape[1] == 1:
        return logits[:, 0]
    return logits[np.arange(len(encoded)), [len(ids) - 1 for ids in encoded]]


def _collect(steps) -> tuple[list[int], list, bool]:
    """``(tokens, logits rows, timed_out)`` from ``GenAIChatModel._steps``."""
    row, logits, timed_out = [], [], False
    for token, step_logits, late in steps:
        row.append(token)
        timed_out = late
        if step_logits is not None:
            logits.append(step_logits)
    return row, logits, timed_out


def _search_options(max_length: int, temperature: float, top_p: float, seed: int | None) -> dict:
    """GenAI search options: greedy at temperature 0, else sampling with OpenAI's temperature and top_p (no top-k)."""
    if temperature <= 0:
        return {"max_length": max_length, "do_sample": False}
    options = {"max_length": max_length, "do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
    return options | ({"random_seed": seed} if seed is not None else {})


def _add_scores(tokenizer, completion: Completion, row: list[int], logits: list, scores: bool, top: int | None):
    """Fill token probabilities and/or OpenAI logprobs from GenAI's per-step logits."""
    import numpy as np
    import torch

    steps = completion.completion_tokens
    if steps == 0:
        completion.logprobs = [] if top is not None else None
        return
    step_logits = torch.from_numpy(np.stack(logits[:steps])).float()
    if scores:
        chosen = torch.log_softmax(step_logits, -1).gather(1, torch.tensor(row[:steps]).unsqueeze(1)).squeeze(1)
        completion.min_token_prob = float(chosen.min().exp())
        completion.mean_token_prob = float(chosen.mean().exp())
    if top is not None:
        completion.logprobs = token_logprobs(tokenizer, row[:steps], step_logits, top)
