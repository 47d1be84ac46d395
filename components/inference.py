"""One chat interface over a local model folder: ONNX Runtime (``model.onnx`` present) or transformers.

Usage:
    model = ChatModel.load(Path("models/student_onnx/int8"))
    completion = model.chat([{"role": "user", "content": "注文が届きません"}], max_tokens=64)

Used by evaluation, the HTTP server and the ``transformers`` teacher backend, so every path generates the
same way (chat template, greedy unless a temperature is given, stop at the tokenizer's EOS).
"""

from __future__ import annotations

import threading
from pathlib import Path

from pydantic import BaseModel


class Completion(BaseModel):
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


class ContextWindowExceeded(ValueError):
    pass


class ChatModel:
    """A causal LM plus its tokenizer. ``chat`` is serialised by a lock: one generation at a time."""

    def __init__(self, model, tokenizer, backend: str, path: str):
        self.model, self.tokenizer, self.backend, self.path = model, tokenizer, backend, path
        self.context_window = int(getattr(model.config, "max_position_embeddings", 2048))
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path | str) -> ChatModel:
        from transformers import AutoTokenizer

        path = str(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        if (Path(path) / "model.onnx").exists():
            import onnxruntime
            from optimum.onnxruntime import ORTModelForCausalLM

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            model = ORTModelForCausalLM.from_pretrained(path, session_options=options)
            return cls(model, tokenizer, "onnxruntime", path)
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        return cls(model, tokenizer, "transformers", path)

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) else ids)

    def chat(
        self,
        messages: list[dict[str, str]],
        max_tokens: int = 96,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> Completion:
        return self.chat_batch([messages], max_tokens, temperature, top_p, seed)[0]

    def chat_batch(
        self,
        conversations: list[list[dict[str, str]]],
        max_tokens: int = 96,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[Completion]:
        """Generate for several conversations at once (left-padded to one width); one Completion each."""
        import torch

        encoded = [self.encode(messages) for messages in conversations]
        for ids in encoded:
            if len(ids) + max_tokens > self.context_window:
                raise ContextWindowExceeded(
                    f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceeds the context window "
                    f"({self.context_window} tokens)"
                )
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
        )
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        width = max(map(len, encoded))
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded])
        attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded])
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=max_tokens,
                eos_token_id=eos,
                pad_token_id=pad,
                **sampling,
            )
        completions = []
        for ids, row in zip(encoded, out[:, width:].tolist(), strict=True):
            stopped = eos in row
            new = row[: row.index(eos) + 1] if stopped else row
            completions.append(
                Completion(
                    text=self.tokenizer.decode(new, skip_special_tokens=True),
                    prompt_tokens=len(ids),
                    completion_tokens=len(new),
                    finish_reason="stop" if stopped else "length",
                )
            )
        return completions
