"""What every local runtime returns: a ``Completion``, built the same way from the tokens it generated.

Usage:
    completion = finish(tokenizer, prompt_ids, generated_ids, timed_out=False, limit=64, stop=["\\n\\n"])

Shared by ``chat_model.ChatModel`` (optimum ONNX Runtime, transformers) and ``genai_model.GenAIChatModel``
(ONNX Runtime GenAI), so the text, token counts and finish reason of one answer never depend on the runtime.
"""

from __future__ import annotations

from pydantic import BaseModel

from slmops.inference.decoding import cut_at_stop


class Completion(BaseModel):
    text: str
    prompt_tokens: int
    completion_tokens: int
    # "stop" (EOS or a stop string) or "length" (max_tokens, or cut short by max_time: then ``timed_out``)
    finish_reason: str
    timed_out: bool = False
    # With ``scores=True``: the probability the model gave each token it emitted, summarised as the least
    # certain token and the geometric mean (exp of the mean log-probability). ``None`` when not asked for.
    min_token_prob: float | None = None
    mean_token_prob: float | None = None
    # With ``logprobs`` (an int, the alternatives wanted per token): OpenAI's ``logprobs.content`` entries.
    logprobs: list[dict] | None = None


class ContextWindowExceeded(ValueError):
    pass


class EngineError(RuntimeError):
    """An external engine refused a request (its 4xx, passed on) or failed (502): the HTTP status to answer
    with, the engine's message, and the request field it named, if any."""

    def __init__(self, message: str, status: int = 502, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


def encode_chat(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """The prompt's token ids through the tokenizer's chat template, with the generation prompt."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, dict) else ids)


def check_fits(prompt_ids: list[int], max_tokens: int, context_window: int) -> list[int]:
    """``prompt_ids``, or ``ContextWindowExceeded`` when prompt + ``max_tokens`` do not fit."""
    if len(prompt_ids) + max_tokens > context_window:
        raise ContextWindowExceeded(
            f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) exceeds the context window "
            f"({context_window} tokens)"
        )
    return prompt_ids


def finish(
    tokenizer, prompt_ids: list[int], row: list[int], timed_out: bool, limit: int, stop: list[str] | None = None
) -> Completion:
    """The Completion for generated tokens ``row`` (cut after EOS, then at the first stop string)."""
    eos = tokenizer.eos_token_id
    stopped = eos in row
    new = row[: row.index(eos) + 1] if stopped else row
    text, hit = cut_at_stop(tokenizer.decode(new, skip_special_tokens=True), stop or [])
    cut_short = timed_out and len(new) < limit and not (stopped or hit)  # max_time ended it early
    return Completion(
        text=text,
        prompt_tokens=len(prompt_ids),
        completion_tokens=len(new),
        finish_reason="stop" if stopped or hit else "length",
        timed_out=cut_short,
    )
