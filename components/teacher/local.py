"""A teacher that is a local transformers (or ONNX) model folder, generating in-process."""

from __future__ import annotations

from tqdm.auto import tqdm

from components.config import SamplingConfig, TransformersTeacherConfig
from components.inference import ChatModel
from components.teacher.base import TeacherResponse


class TransformersTeacher:
    def __init__(self, cfg: TransformersTeacherConfig):
        self.model = ChatModel.load(cfg.model)
        self.teacher_id = f"transformers:{cfg.model}"
        self.model_version = cfg.model

    def complete(
        self, requests: list[list[dict[str, str]]], sampling: SamplingConfig, response_format: dict | None = None
    ) -> list[TeacherResponse]:
        out = []
        for messages in tqdm(requests, desc="teacher", unit="req", leave=False):
            c = self.model.chat(messages, sampling.max_tokens, sampling.temperature, sampling.top_p)
            out.append(
                TeacherResponse(
                    text=c.text,
                    finish_reason=c.finish_reason,
                    prompt_tokens=c.prompt_tokens,
                    completion_tokens=c.completion_tokens,
                )
            )
        return out
