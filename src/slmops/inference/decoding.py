"""What generation needs beyond ``generate``: OpenAI ``stop`` strings and per-token ``logprobs``.

Usage:
    criteria = StopOnText(tokenizer, ["\\n\\n"], prompt_width)       # a StoppingCriteria for generate
    text, stopped = cut_at_stop("答え\\n\\n続き", ["\\n\\n"])        # ("答え", True)
    holder = StopHolder(["END"]); holder.feed("abcE") -> "abc" (holds "E" back until it is known)

A stop string is never part of the answer: generation stops once the decoded answer contains one, and the
text is cut where the first one starts (``finish_reason`` "stop"). Streams hold back only the characters
that could still be the start of a stop string.
"""

from __future__ import annotations

import math


class StopOnText:
    """A transformers ``StoppingCriteria``: a row is done once its decoded new tokens contain a stop string."""

    def __init__(self, tokenizer, stops: list[str], prompt_width: int):
        self.tokenizer, self.stops, self.prompt_width = tokenizer, stops, prompt_width

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width :], skip_special_tokens=True)
        return torch.tensor([any(s in text for s in self.stops) for text in texts], device=input_ids.device)


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to where its first stop string starts, and whether one was found."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


class StopHolder:
    """Streams text pieces without ever sending a stop string or anything after it."""

    def __init__(self, stops: list[str]):
        self.stops, self.pending, self.stopped = stops, "", False

    def feed(self, piece: str) -> str:
        """What of ``piece`` (plus what was held back) can be sent now."""
        if self.stopped:
            return ""
        self.pending += piece
        text, self.stopped = cut_at_stop(self.pending, self.stops)
        if self.stopped:
            self.pending = ""
            return text
        keep = max((k for s in self.stops for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0)
        ready, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return ready

    def flush(self) -> str:
        """The held-back tail once generation ended without a stop string."""
        tail, self.pending = ("" if self.stopped else self.pending), ""
        return tail


def token_logprobs(tokenizer, token_ids: list[int], step_logits, top: int) -> list[dict]:
    """OpenAI ``choices[].logprobs.content``: one entry per emitted token, with its ``top`` alternatives.

    ``step_logits`` is a (steps, vocab) tensor of the raw logits (before sampling warpers) that chose them.
    """
    import torch

    logprobs = torch.log_softmax(step_logits.float(), dim=-1)
    entries = []
    for step, token_id in enumerate(token_ids):
        row = logprobs[step]
        alternatives = []
        if top > 0:
            values, ids = torch.topk(row, top)
            alternatives = [_entry(tokenizer, int(i), float(v)) for v, i in zip(values, ids, strict=True)]
        entries.append(_entry(tokenizer, token_id, float(row[token_id])) | {"top_logprobs": alternatives})
    return entries


def _entry(tokenizer, token_id: int, logprob: float) -> dict:
    token = tokenizer.decode([token_id], skip_special_tokens=False)
    return {
        "token": token,
        "logprob": max(logprob, -9999.0) if math.isfinite(logprob) else -9999.0,
        "bytes": list(token.encode("utf-8")),
    }
