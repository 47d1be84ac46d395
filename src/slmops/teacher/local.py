"""A teacher that is a local transformers (or ONNX) model folder or hub id, generating in-process in batches.

Usage (params): ``synthesize.teacher: {kind: transformers, model: /models/Qwen2.5-7B-Instruct, batch_size: 8}``
"""

from __future__ import annotations

from slmops.config import SamplingConfig, TransformersTeacherConfig
from slmops.inference.chat_model import ChatModel, Completion, ContextWindowExceeded
from slmops.teacher.base import OnResponse, TeacherResponse, request_seed


class TransformersTeacher:
    def __init__(self, cfg: TransformersTeacherConfig):
        self.cfg = cfg
        self.model = ChatModel.load(cfg.model)
        self.teacher_id = f"transformers:{cfg.model}"
        self.model_version = cfg.model

    def complete(
        self,
        requests: list[list[dict[str, str]]],
        sampling: SamplingConfig,
        response_format: dict | None = None,
        on_response: OnResponse | None = None,
    ) -> list[TeacherResponse]:
        out: list[TeacherResponse] = []
        for start in range(0, len(requests), self.cfg.batch_size):
            batch = requests[start : start + self.cfg.batch_size]
            try:
                completions = self.model.chat_batch(
                    batch,
                    sampling.max_tokens,
                    sampling.temperature,
                    sampling.top_p,
                    request_seed(sampling.seed, batch[0]),
                )
                responses = [_response(c) for c in completions]
            except ContextWindowExceeded:  # one prompt too long: answer the batch one by one, reject that one
                responses = [self._one(messages, sampling) for messages in batch]
            for offset, response in enumerate(responses):
                if on_response is not None:
                    on_response(start + offset, response)
            out += responses
        return out

    def _one(self, messages: list[dict[str, str]], sampling: SamplingConfig) -> TeacherResponse:
        try:
            seed = request_seed(sampling.seed, messages)
            c = self.model.chat(messages, sampling.max_tokens, sampling.temperature, sampling.top_p, seed)
        except ContextWindowExceeded:
            return TeacherResponse(error="context_window_exceeded")
        return _response(c)


def _response(c: Completion) -> TeacherResponse:
    return TeacherResponse(
        text=c.text, finish_reason=c.finish_reason, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens
    )
