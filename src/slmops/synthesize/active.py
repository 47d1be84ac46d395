"""Which new inputs the teacher labels in an active round: where the student disagrees, then where it is unsure.

Usage:
    views = student_views(ChatModel.load("models/student"), task, inputs, wanted, max_tokens=128)
    chosen = select(views, budget=20, confident=0.9)      # indices into views, disagreements first

The teacher wrote each input for one class (``wanted``); the student's answer *disagrees* when it names
another class or does not parse. Its *certainty* is the geometric mean probability of the tokens that spell
its label fields (the task's enum and labels fields; every token when it has none, 0 when unparsed).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from slmops.tasks import Task


@dataclass(frozen=True)
class StudentView:
    """The student's answer to one new input, as the selection sees it."""

    wanted: str | None  # the class the teacher wrote the input for (None: a task without classes)
    answered: str | None  # the class the student gave
    certainty: float  # mean probability of its label fields' tokens, 0..1
    valid: bool = True  # the answer parsed as a label

    @property
    def disagrees(self) -> bool:
        return not self.valid or self.answered != self.wanted


def select(views: list[StudentView], budget: int, confident: float) -> list[int]:
    """Up to ``budget`` indices: every disagreement (least certain first), then agreeing answers under
    ``confident`` (least certain first). A confident agreeing answer is never chosen."""
    disagree = sorted((v.certainty, i) for i, v in enumerate(views) if v.disagrees)
    unsure = sorted((v.certainty, i) for i, v in enumerate(views) if not v.disagrees and v.certainty < confident)
    return [i for _, i in disagree + unsure][: max(budget, 0)]


def label_fields(task: Task) -> list[str]:
    """The fields whose tokens measure certainty: enum and labels fields, else every field."""
    fields = [k for k, f in task.fields.items() if f.type in ("enum", "labels")]
    return fields or list(task.fields)


def field_spans(task: Task, text: str, label: dict) -> list[tuple[int, int]]:
    """Character spans of the label fields' values in the answer ``text`` (the JSON the student wrote)."""
    spans = []
    for name in label_fields(task):
        key = text.find(json.dumps(name, ensure_ascii=False))
        value = json.dumps(label.get(name), ensure_ascii=False)
        start = text.find(value, key) if key >= 0 else -1
        if start >= 0:
            spans.append((start, start + len(value)))
    return spans


def certainty(task: Task, label: dict | None, logprobs: list[dict]) -> float:
    """Geometric mean probability of the tokens overlapping the label fields' values (``logprobs``: one entry
    per generated token, OpenAI style); 0 for an answer that did not parse."""
    if label is None or not logprobs:
        return 0.0
    text = "".join(entry["token"] for entry in logprobs)
    spans, chosen, offset = field_spans(task, text, label), [], 0
    for entry in logprobs:
        end = offset + len(entry["token"])
        if not spans or any(offset < b and end > a for a, b in spans):
            chosen.append(entry["logprob"])
        offset = end
    return math.exp(sum(chosen) / len(chosen)) if chosen else 0.0


def student_views(model, task: Task, inputs: list[str], wanted: list[str | None], max_tokens: int, batch: int = 8):
    """The student's (a ``ChatModel``) greedy answers to ``inputs``, each as a ``StudentView``."""
    views = []
    for start in range(0, len(inputs), batch):
        chunk = [task.build_messages(t) for t in inputs[start : start + batch]]
        for j, completion in enumerate(model.chat_batch(chunk, max_tokens, logprobs=0)):
            label, _ = task.parse_output(completion.text)
            data = label.model_dump() if label is not None else None
            answered = task.class_of(data) if data is not None else None
            score = certainty(task, data, completion.logprobs or [])
            views.append(StudentView(wanted[start + j], answered, score, valid=data is not None))
    return views
