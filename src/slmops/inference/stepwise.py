"""Step-wise decoding for continuous batching: one KV cache holds every running row, and new rows join it.

Usage:
    decoder = StepDecoder(model)                  # a ChatModel with backend "transformers" or "onnxruntime"
    logits = decoder.add([ids_a, ids_b])          # prefill new prompts together and merge them into the batch
    logits = decoder.step([token_0, token_1, ...])  # feed one token per running row (row order) -> next logits
    decoder.keep([0, 2])                          # the other rows are done: drop their cache rows

Rows are left-padded: each row's real tokens are the last columns of the cache, the attention mask hides the
padding, and each row has its own position ids, so a row decodes as it would alone (float forms give the
same greedy answers). Columns no running row uses any more are trimmed, so the cache is never longer than its
longest row. ``pick`` chooses the next token of each row as ``generate`` would: greedy, or sampled with the
model's ``generation_config`` (repetition penalty, top_k) and the request's temperature and top_p, drawn from
the row's own ``torch.Generator`` so a seed reproduces an answer whatever else is in the batch.
"""

from __future__ import annotations

STEPPABLE = ("transformers", "onnxruntime")  # ChatModel backends with a KV cache we can merge and split


class StepDecoder:
    """The running batch of one model: its KV cache, attention mask and each row's next position."""

    def __init__(self, model):
        self.chat_model, self.net, self.device = model, model.model, model.device
        tokenizer = model.tokenizer
        self.pad = next((t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id) if t is not None), 0)
        self.torch_cache = model.backend == "transformers"
        self.reset()

    def reset(self) -> None:
        self.cache = None  # per layer (key, value), each [rows, kv heads, columns, head size]
        self.mask = None  # [rows, columns]: 1 where a row has a real token
        self.positions = None  # [rows]: the position id of each row's next token

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[0])

    def add(self, prompts: list[list[int]]):
        """Prefill ``prompts`` (left-padded together), append them as the last rows; their last logits [n, vocab]."""
        import torch

        width = max(map(len, prompts))
        ids = torch.tensor([[self.pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits, cache = self._forward(ids, mask, positions, None)
        lengths = torch.tensor([len(p) for p in prompts], device=self.device)
        if self.cache is None:
            self.cache, self.mask, self.positions = cache, mask, lengths
        else:
            columns = max(self.mask.shape[1], width)
            self.mask = torch.cat([_left_pad(self.mask, columns), _left_pad(mask, columns)])
            joined = zip(self.cache, cache, strict=True)  # per layer: (running (key, value), joining (key, value))
            self.cache = tuple(
                tuple(torch.cat([_left_pad(a, columns), _left_pad(b, columns)]) for a, b in zip(*pair, strict=True))
                for pair in joined
            )
            self.positions = torch.cat([self.positions, lengths])
        return logits

    def step(self, tokens: list[int]):
        """Feed each running row its last chosen token; the next logits [rows, vocab]."""
        import torch

        ids = torch.tensor(tokens, device=self.device).unsqueeze(1)
        mask = torch.cat([self.mask, torch.ones_like(ids)], dim=1)
        logits, self.cache = self._forward(ids, mask, self.positions.unsqueeze(1), self.cache)
        self.mask, self.positions = mask, self.positions + 1
        return logits

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (indices, in order); trim the columns no kept row uses."""
        import torch

        if not rows:
            self.reset()
            return
        index = torch.tensor(rows, device=self.device)
        mask = self.mask[index]
        first = int(mask.any(0).nonzero()[0])  # the first column a kept row still uses
        self.mask, self.positions = mask[:, first:], self.positions[index]
        self.cache = tuple(tuple(t[index][:, :, first:] for t in pair) for pair in self.cache)

    def _forward(self, ids, mask, positions, cache):
        """The model's last-position logits (float) and its new cache, as per-layer (key, value) tuples."""
        if self.torch_cache:
            from transformers import DynamicCache

            past = DynamicCache.from_legacy_cache(cache) if cache is not None else DynamicCache()
            out = self.net(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=past,
                use_cache=True,
                logits_to_keep=1,
            )
            return out.logits[:, -1].float(), out.past_key_values.to_legacy_cache()
        extra = {"position_ids": positions} if "position_ids" in self.net.input_names else {}
        out = self.net(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True, **extra)
        return out.logits[:, -1].float(), tuple(tuple(pair) for pair in out.past_key_values)


def _left_pad(tensor, columns: int):
    """``tensor`` with zeros on the left of its sequence axis (1 for a mask, -2 for a cache) to ``columns``."""
    import torch

    axis = 1 if tensor.dim() == 2 else -2
    missing = columns - tensor.shape[axis]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=axis)


class Picker:
    """Chooses a row's next token as ``generate`` would from the model's generation config."""

    def __init__(self, model):
        config = getattr(model.model, "generation_config", None)
        self.penalty = float(getattr(config, "repetition_penalty", None) or 1.0)
        self.top_k = int(getattr(config, "top_k", None) or 0)

    def pick(self, logits, history: list[int], temperature: float, top_p: float, generator) -> int:
        """The next token from one row's raw ``logits`` [vocab]; ``history`` is the prompt plus the answer so far."""
        import torch
        from transformers.generation import (
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        scores = logits.unsqueeze(0)
        ids = torch.tensor([history], device=scores.device)
        if self.penalty != 1.0:
            scores = RepetitionPenaltyLogitsProcessor(self.penalty)(ids, scores)
        if temperature <= 0:
            return int(scores.argmax(-1))
        scores = TemperatureLogitsWarper(temperature)(ids, scores)
        if self.top_k > 0:
            scores = TopKLogitsWarper(self.top_k)(ids, scores)
        if top_p < 1.0:
            scores = TopPLogitsWarper(top_p)(ids, scores)
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator))
