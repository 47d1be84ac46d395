"""One chat interface over a local model folder: ONNX Runtime GenAI (``genai_config.json``), ONNX Runtime
(``model.onnx`` present) or transformers.

Usage:
    model = ChatModel.load(Path("models/student_onnx/int8"))
    completion = model.chat([{"role": "user", "content": "注文が届きません"}], max_tokens=64)

Used by evaluation, the HTTP server and the ``transformers`` teacher backend, so every path generates the
same way (chat template, greedy unless a temperature is given, stop at the tokenizer's EOS). A transformers
folder runs on CUDA in bfloat16 when a GPU is there (``device="auto"``), else on the CPU in float32; parity
asks for ``device="cpu"`` to compare fp32 logits. ONNX folders run on ONNX Runtime's CPU provider.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from slmops.inference.completion import (  # noqa: F401  (re-exported: callers import them from here)
    Completion,
    ContextWindowExceeded,
    EngineError,
    check_fits,
    encode_chat,
    finish,
)


def fix_cache_shapes(model) -> None:
    """Take the KV-cache shape (KV heads, head size) from the exported graph itself.

    optimum-onnx's ``ORTModelForCausalLM`` guesses it from the config by model type and gets GQA families it
    does not list (phi3, gemma2: KV heads taken as attention heads) and an explicit ``head_dim`` (gemma2)
    wrong, so their first generation step fails on the empty cache's shape.
    """
    shapes = getattr(model, "input_shapes", {})
    key = next((shapes[n] for n in getattr(model, "key_value_input_names", []) if n.endswith(".key")), None)
    if key is None or len(key) != 4 or not all(isinstance(d, int) for d in (key[1], key[3])):
        return
    model.num_key_value_heads, model.embed_size_per_head = key[1], key[3]


def pick_device(device: str = "auto") -> tuple[str, object]:
    """``(device, torch dtype)`` for a transformers model: CUDA with bfloat16 (float32 where the GPU lacks it)
    when ``device`` is "cuda", or "auto" and a GPU is present; else ("cpu", float32)."""
    import torch

    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return "cpu", torch.float32


class ChatModel:
    """A causal LM plus its tokenizer. ``chat`` is serialised by a lock: one generation at a time."""

    def __init__(self, model, tokenizer, backend: str, path: str):
        self.model, self.tokenizer, self.backend, self.path = model, tokenizer, backend, path
        self.device = getattr(model, "device", None)  # where input tensors go (ONNX Runtime models: cpu)
        self.context_window = int(getattr(model.config, "max_position_embeddings", 2048))
        self._lock = threading.Lock()
        # Multi-LoRA (``inference/lora.py``): the adapter this view generates with (None: the base, every
        # adapter off), and the views by served name; all views share the model and the lock.
        self.adapter: str | None = None
        self.adapters: dict[str, ChatModel] = {}

    @classmethod
    def load(cls, path: Path | str, device: str = "auto") -> ChatModel:
        """An ONNX folder (``model.onnx``) or a transformers one, on ``device`` (see ``pick_device``)."""
        from transformers import AutoTokenizer

        if (Path(path) / "genai_config.json").exists():  # an ONNX Runtime GenAI folder (it has a model.onnx too)
            from slmops.inference.genai_model import GenAIChatModel

            return GenAIChatModel.load(path)  # type: ignore[return-value]  (the same interface)
        path = str(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        if (Path(path) / "model.onnx").exists():
            import onnxruntime
            from optimum.onnxruntime import ORTModelForCausalLM

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            model = ORTModelForCausalLM.from_pretrained(path, session_options=options)
            fix_cache_shapes(model)
            return cls(model, tokenizer, "onnxruntime", path)
        from transformers import AutoModelForCausalLM

        where, dtype = pick_device(device)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(where).eval()
        return cls(model, tokenizer, "transformers", path)

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        return encode_chat(self.tokenizer, messages)

    def chat(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        max_time: float | None = None,
        scores: bool = False,
        stop: list[str] | None = None,
        logprobs: int | None = None,
    ) -> Completion:
        return self.chat_batch([messages], max_tokens, temperature, top_p, seed, max_time, scores, stop, logprobs)[0]

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
        """Generate for several conversations at once (left-padded to one width); one Completion each.

        ``max_tokens`` is one budget for all, or one per conversation (each answer is cut at its own).
        ``max_time`` (seconds) stops generation early; the answer then ends with finish_reason "length" and
        ``timed_out``. ``scores`` fills each Completion's token probabilities (from the raw logits, before any
        sampling warpers); it keeps one vocabulary-sized row per generated token until the batch ends.
        ``stop``: strings that end an answer and are cut from it. ``logprobs``: fill each Completion's
        OpenAI-style ``logprobs`` with this many alternatives per token (0: the chosen token only).
        """
        import torch

        from slmops.inference.decoding import StopOnText

        limits = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(conversations)
        encoded = [self.checked(messages, limit) for messages, limit in zip(conversations, limits, strict=True)]
        sampling = self._sampling(temperature, top_p, max_time)
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        width = max(map(len, encoded))
        padded = [([pad] * (width - len(ids)) + ids, [0] * (width - len(ids)) + [1] * len(ids)) for ids in encoded]
        input_ids = torch.tensor([ids for ids, _ in padded], device=self.device)
        attention_mask = torch.tensor([mask for _, mask in padded], device=self.device)
        started = time.perf_counter()
        with self.generating():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=max(limits),
                eos_token_id=eos,
                pad_token_id=pad,
                output_logits=scores or logprobs is not None,
                return_dict_in_generate=True,
                stopping_criteria=[StopOnText(self.tokenizer, stop, width)] if stop else None,
                **sampling,
            )
        timed_out = max_time is not None and time.perf_counter() - started >= max_time
        completions = [
            self._completion(ids, row[:limit], timed_out, limit, stop)
            for ids, row, limit in zip(encoded, out.sequences[:, width:].tolist(), limits, strict=True)
        ]
        for i, completion in enumerate(completions):
            if scores:
                add_token_probs(completion, out.sequences[i, width:], out.logits, i)
            if logprobs is not None:
                add_logprobs(self.tokenizer, completion, out.sequences[i, width:], out.logits, i, logprobs)
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
        """Yield the answer's text piece by piece as it is generated, then its ``Completion``.

        Raises ``ContextWindowExceeded`` before generating (at the first ``next``), like ``chat``. A ``stop``
        string is never yielded: text that may be its start is held back until it is known not to be.
        """
        import torch
        from transformers import TextIteratorStreamer

        from slmops.inference.decoding import StopHolder, StopOnText

        ids = self.checked(messages, max_tokens)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        result: dict[str, object] = {}

        def generate() -> None:
            started = time.perf_counter()
            try:
                with self.generating():
                    if seed is not None:
                        torch.manual_seed(seed)
                    input_ids = torch.tensor([ids], device=self.device)
                    result["out"] = self.model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        max_new_tokens=max_tokens,
                        eos_token_id=self.tokenizer.eos_token_id,
                        pad_token_id=self.tokenizer.pad_token_id,
                        streamer=streamer,
                        stopping_criteria=[StopOnText(self.tokenizer, stop, len(ids))] if stop else None,
                        **self._sampling(temperature, top_p, max_time),
                    )
                result["timed_out"] = max_time is not None and time.perf_counter() - started >= max_time
            except Exception as err:  # surfaced to the consumer below; the streamer must still end
                result["error"] = err
                streamer.end()

        worker = threading.Thread(target=generate, name="generate", daemon=True)
        worker.start()
        holder = StopHolder(stop or [])
        for piece in streamer:
            ready = holder.feed(piece) if piece else ""
            if ready:
                yield ready
        worker.join()
        if "error" in result:
            raise result["error"]  # type: ignore[misc]
        if tail := holder.flush():
            yield tail
        row = result["out"][0, len(ids) :].tolist()  # type: ignore[index]
        yield self._completion(ids, row, bool(result["timed_out"]), max_tokens, stop)

    def lock(self) -> threading.Lock:
        """The lock every generation holds (the continuous batcher takes it for each step)."""
        return self._lock

    @contextmanager
    def generating(self):
        """One generation at a time, without autograd, with this view's adapter active (or none, for the base)."""
        import torch

        with self._lock, torch.inference_mode():
            if self.adapter is not None:
                self.model.set_adapter(self.adapter)
            # The base of a multi-LoRA set (it has adapter views) answers with every adapter off; a model loaded
            # with its one adapter (the trained student the parity gate reads) answers as loaded.
            if self.adapter is None and self.adapters and hasattr(self.model, "disable_adapter"):
                with self.model.disable_adapter():
                    yield
            else:
                yield

    def room_for(self, messages: list[dict[str, str]]) -> int:
        """How many tokens the context window leaves for an answer to ``messages``."""
        return self.context_window - len(self.encode(messages))

    def checked(self, messages: list[dict[str, str]], max_tokens: int) -> list[int]:
        """The prompt's token ids; raises ``ContextWindowExceeded`` when prompt + ``max_tokens`` do not fit."""
        return check_fits(self.encode(messages), max_tokens, self.context_window)

    @staticmethod
    def _sampling(temperature: float, top_p: float, max_time: float | None) -> dict:
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
        )
        return sampling | ({"max_time": max_time} if max_time is not None else {})

    def _completion(
        self, prompt_ids: list[int], row: list[int], timed_out: bool, limit: int, stop: list[str] | None = None
    ) -> Completion:
        return finish(self.tokenizer, prompt_ids, row, timed_out, limit, stop)


def add_token_probs(completion: Completion, row, logits, index: int) -> None:
    """Fill ``completion``'s token probabilities from generate's per-step raw logits (batch row ``index``)."""
    import torch

    steps = completion.completion_tokens
    if steps == 0:
        return
    chosen = row[:steps].unsqueeze(1)
    step_logits = torch.stack([logits[t][index] for t in range(steps)]).float()
    logprobs = torch.log_softmax(step_logits, dim=-1).gather(1, chosen).squeeze(1)
    completion.min_token_prob = float(logprobs.min().exp())
    completion.mean_token_prob = float(logprobs.mean().exp())


def add_logprobs(tokenizer, completion: Completion, row, logits, index: int, top: int) -> None:
    """Fill ``completion.logprobs`` (OpenAI's ``logprobs.content``) for batch row ``index``."""
    import torch

    from slmops.inference.decoding import token_logprobs

    steps = completion.completion_tokens
    step_logits = torch.stack([logits[t][index] for t in range(steps)]) if steps else None
    completion.logprobs = token_logprobs(tokenizer, row[:steps].tolist(), step_logits, top) if steps else []
