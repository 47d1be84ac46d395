"""One stage's conversation with the teacher: cached calls, validation, rejects, usage and provenance.

Usage:
    labeller = Labeller(cfg, task, open_teacher(cfg.teacher), cache, StageProgress(len(inputs)))
    rows = labeller.accepted_rows(..., source="teacher_label", sampling=cfg.sampling)

The synthesize and label_traffic stages share it, so every teacher answer is validated, counted and
given provenance the same way.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tqdm.auto import tqdm

from slmops.config import PIIConfig, SynthesizeConfig
from slmops.io import sha256_text
from slmops.tasks import Task
from slmops.teacher.base import TeacherResponse
from slmops.teacher.cache import ResponseCache, complete_cached
from slmops.teacher.validate import check_label
from slmops.text import pii


class StageProgress:
    """One bar for the whole stage: rate and ETA from tqdm, plus rejects and cache hits as they happen."""

    def __init__(self, total: int, desc: str = "synthesize"):
        self.bar = tqdm(total=total, desc=desc, unit="req", dynamic_ncols=True)
        self.rejects = 0
        self.cache_hits = 0

    def grow(self, n: int) -> None:
        self.bar.total += n
        self.bar.refresh()

    def step(self, response: TeacherResponse, rejected: bool) -> None:
        self.cache_hits += response.cached
        self.rejects += rejected
        self.bar.set_postfix(rejects=self.rejects, cache_hits=self.cache_hits, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class Labeller:
    """One stage's conversation with the teacher: cached calls, validation, rejects, usage and provenance."""

    def __init__(
        self, cfg: SynthesizeConfig, task: Task, teacher, cache: ResponseCache, progress: StageProgress, pii_cfg=None
    ):
        self.cfg, self.task, self.teacher, self.cache, self.progress = cfg, task, teacher, cache, progress
        self.pii_cfg: PIIConfig | None = pii_cfg  # params.pii: what is masked in the teacher's answers
        self.template_hash = sha256_text(task.prompt_template_text())[:16]
        self.rejected: Counter[str] = Counter()
        self.rejects: list[dict[str, Any]] = []
        self.usage: Counter[str] = Counter()
        self.cache_hits = 0

    def ask(self, requests: list[list[dict]], sampling, response_format=None, check=None) -> list[TeacherResponse]:
        def on_answer(i: int, response: TeacherResponse) -> None:
            self.progress.step(response, rejected=check is not None and check(i, response) is not None)

        responses, hits = complete_cached(
            self.teacher, self.cache, self.template_hash, requests, sampling, response_format, on_answer
        )
        self.cache_hits += hits
        for r in responses:
            if not r.cached and r.error is None:
                self.usage["prompt_tokens"] += r.prompt_tokens
                self.usage["completion_tokens"] += r.completion_tokens
                self.usage["calls"] += 1
        return responses

    def label(self, inputs: list[str], wanted: list[str] | None = None) -> list[tuple[Any, str | None, Any]]:
        """Label ``inputs``; with ``wanted`` classes (self-instruct), another class is a label_mismatch."""

        def check(i: int, response: TeacherResponse) -> tuple[Any, str | None]:
            lab, reason = check_label(self.task, response, inputs[i], self.pii_cfg)
            if lab is not None and wanted is not None and self.task.class_of(lab.model_dump()) != wanted[i]:
                return None, "label_mismatch"
            return lab, reason

        requests = [self.task.build_teacher_messages(t) for t in inputs]
        responses = self.ask(requests, self.cfg.sampling, self.task.response_format(), lambda i, r: check(i, r)[1])
        return [(*check(i, r), r) for i, r in enumerate(responses)]

    def provenance(self, sampling, response: TeacherResponse) -> dict[str, Any]:
        """Who answered, how, and when: the answer's own time, so a rerun from the cache writes the same row."""
        return {
            "teacher_id": self.teacher.teacher_id,
            "model_version": self.teacher.model_version,
            "template_hash": self.template_hash,
            "sampling": sampling.model_dump(),
            "created_at": response.created_at,
        }

    def reject(self, row_id: str, text: str, reason: str, response: TeacherResponse) -> None:
        self.rejected[reason.split(":")[0]] += 1
        raw = pii.mask(response.text, cfg=self.pii_cfg) if response.text else None
        self.rejects.append({"id": row_id, "input": text, "reason": reason, "raw": raw})

    def accepted_rows(self, rows: list[tuple[str, str, Any, str | None, TeacherResponse]], source: str, sampling):
        """``(id, input, label, reason, response)`` tuples -> accepted training rows; the rest are rejected."""
        accepted = []
        for row_id, text, lab, reason, response in rows:
            if lab is None:
                self.reject(row_id, text, reason or "unknown", response)
                continue
            accepted.append(
                {
                    "id": row_id,
                    "input": text,
                    "expected": lab.model_dump(),
                    "source": source,
                    "provenance": self.provenance(sampling, response),
                }
            )
        return accepted
