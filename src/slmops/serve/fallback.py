"""Hybrid serving: the student answers first; the teacher is the backstop for answers that do not pass.

Usage:
    with open_teacher(cfg.teacher) as teacher:
        fallback = Fallback(teacher, cfg, task)
        reason = fallback.reason(completion)            # None, "invalid_output" or "low_confidence"
        answer = fallback.answer(messages, max_tokens)  # the teacher's Completion, or None if it failed too

An answer is sent to the teacher when it does not parse as the task's JSON schema (``on_invalid_output``) or
when the student's confidence is under ``min_confidence``. The teacher sees the task's instructions plus the
user's last message, PII-masked first (nothing unmasked leaves the machine), and is asked for the task's
JSON schema (``response_format``). A teacher answer that fails the schema too, or a teacher that cannot be
reached, leaves the student's answer in place: the fallback never turns an answer into an error.
"""

from __future__ import annotations

import logging

from slmops.config import FallbackConfig, PIIConfig, SamplingConfig
from slmops.inference.chat_model import Completion
from slmops.tasks import Task
from slmops.teacher.base import Teacher, TeacherUnavailable
from slmops.text import pii

log = logging.getLogger(__name__)


class Fallback:
    def __init__(self, teacher: Teacher, cfg: FallbackConfig, task: Task, pii_cfg: PIIConfig | None = None):
        self.teacher, self.cfg, self.task = teacher, cfg, task
        self.pii_cfg = pii_cfg  # params.pii: the masker applied before the teacher sees anything

    @property
    def needs_scores(self) -> bool:
        return self.cfg.min_confidence is not None

    def reason(self, completion: Completion) -> str | None:
        """Why the student's answer should not be sent as it is, or None when it may."""
        if self.cfg.on_invalid_output and self.task.parse_output(completion.text)[0] is None:
            return "invalid_output"
        if self.cfg.min_confidence is not None:
            score = completion.min_token_prob if self.cfg.confidence == "min_token" else completion.mean_token_prob
            if score is not None and score < self.cfg.min_confidence:
                return "low_confidence"
        return None

    def answer(self, messages: list[dict[str, str]], max_tokens: int | None) -> Completion | None:
        """The teacher's answer when it is valid, else None (the caller keeps the student's).

        ``max_tokens`` is the client's, if it set one; else ``fallback.max_tokens``.
        """
        user_text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        request = self.task.build_teacher_messages(pii.mask(user_text, cfg=self.pii_cfg))
        sampling = SamplingConfig(temperature=0.0, max_tokens=max_tokens or self.cfg.max_tokens)
        try:
            response = self.teacher.complete([request], sampling, self.task.response_format())[0]
        except TeacherUnavailable as err:
            log.warning("teacher fallback failed: %s", err)
            return None
        why = response.error or self.task.parse_output(response.text or "")[1]  # a transport error, or the answer's
        if why is not None:
            log.warning("teacher fallback failed: %s; the student's answer is sent", why)
            return None
        return Completion(
            text=response.text or "",
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            finish_reason=response.finish_reason or "stop",
        )
