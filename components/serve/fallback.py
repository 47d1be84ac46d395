"""Hybrid serving: the student answers first; the teacher is the backstop for answers that do not pass.

Usage:
    with open_teacher(cfg.teacher) as teacher:
        fallback = Fallback(teacher, cfg)
        reason = fallback.reason(completion)            # None, "invalid_output" or "low_confidence"
        answer = fallback.answer(messages, max_tokens)  # the teacher's Completion, or None if it failed too

An answer is sent to the teacher when it does not parse as the task's JSON schema (``on_invalid_output``) or
when the student's confidence is under ``min_confidence``. The teacher sees the task's instructions plus the
user's last message, PII-masked first (nothing unmasked leaves the machine), and is asked for the task's
JSON schema (``response_format``). A teacher answer that fails the schema too, or a teacher that cannot be
reached, leaves the student's answer in place: the fallback never turns an answer into an error.
"""

from __future__ import annotations

from components import pii
from components.config import FallbackConfig, SamplingConfig
from components.inference import Completion
from components.tasks import ticket_triage as task
from components.teacher.base import Teacher, TeacherUnavailable


class Fallback:
    def __init__(self, teacher: Teacher, cfg: FallbackConfig):
        self.teacher, self.cfg = teacher, cfg

    @property
    def needs_scores(self) -> bool:
        return self.cfg.min_confidence is not None

    def reason(self, completion: Completion) -> str | None:
        """Why the student's answer should not be sent as it is, or None when it may."""
        if self.cfg.on_invalid_output and task.parse_output(completion.text)[0] is None:
            return "invalid_output"
        if self.cfg.min_confidence is not None:
            score = completion.min_token_prob if self.cfg.confidence == "min_token" else completion.mean_token_prob
            if score is not None and score < self.cfg.min_confidence:
                return "low_confidence"
        return None

    def answer(self, messages: list[dict[str, str]], max_tokens: int) -> Completion | None:
        """The teacher's answer when it is valid, else None (the caller keeps the student's)."""
        user_text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        request = task.build_teacher_messages(pii.mask(user_text))
        try:
            response = self.teacher.complete(
                [request], SamplingConfig(temperature=0.0, max_tokens=max_tokens), task.response_format()
            )[0]
        except TeacherUnavailable:
            return None
        if response.error or response.text is None or task.parse_output(response.text)[0] is None:
            return None
        return Completion(
            text=response.text,
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            finish_reason=response.finish_reason or "stop",
        )
