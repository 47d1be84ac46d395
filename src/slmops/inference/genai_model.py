"""A chat model over an ONNX Runtime GenAI folder (``genai_config.json`` + ``model.onnx``): its C++ decode loop.

Usage:
    model = GenAIChatModel.load(Path("models/student_onnx/genai_int4"))   # or ChatModel.load, which routes here
    completion = model.chat([{"role": "user", "content": "注文が届きません"}], max_tokens=64)

The same interface as ``chat_model.ChatModel`` (``chat``, ``chat_batch``, ``chat_stream``, ``room_for``,
``checked``), so the server, evaluation and parity use it unchanged. The prompt is encoded and the answer
decoded by the folder's transformers tokenizer (the one every other form uses), so token ids, text and counts
match the other forms; GenAI only runs the model and picks tokens. Logprobs and token probabilities come from
the logits GenAI exposes for each step (``get_output("logits")``, before sampling). Conversations in a batch run
one after the other; a ``seed`` is GenAI's ``random_seed``.
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
    """An ``onnxruntime_genai.Model`` plus the folder's tokenizer. One generation at a time (a lock)."""

    def __init__(self, model, tokenizer, path: str, context_window: int):
        self.model, self.tokenizer, self.path = model, tokenizer, path
        self.backend, self.device, self.context_window = "onnxruntime-genai", None, context_window
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
        """As ``ChatModel.chat_batch``; the conversations are generated one after the other."""
        limits = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(conversations)
        encoded = [self.checked(messages, limit) for messages, limit in zip(conversations, limits, strict=True)]
        completions = []
        for ids, limit in zip(encoded, limits, strict=True):
            keep_logits = scores or logprobs is not None
            steps = self._steps(ids, limit, temperature, top_p, seed, max_time, stop, keep_logits)
            row, logits, timed_out = [], [], False
            for token, step_logits, late in steps:
                row.append(token)
                timed_out = late
                if keep_logits:
                    logits.append(step_logits)
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
                token = int(generator.get_next_tokens()[0])
                step_logits = np.array(generator.get_output("logits"))[0, -1] if keep_logits else None
                row.append(token)
                timed_out = max_time is not None and time.perf_counter() - started >= max_time
                yield token, step_logits, timed_out
                if token == self.tokenizer.eos_token_id or timed_out or generator.is_done():
                    return
                if stop and cut_at_stop(self.tokenizer.decode(row, skip_special_tokens=True), stop)[1]:
                    return


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
