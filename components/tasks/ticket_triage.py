"""Ticket triage: a Japanese customer-support inquiry in, ``{"category", "priority", "reply"}`` JSON out.

Usage:
    from components.tasks import ticket_triage as task
    messages = task.build_messages("注文した商品がまだ届きません。")          # what the student sees
    teacher_messages = task.build_teacher_messages("注文した商品がまだ届きません。")  # what the teacher sees
    label, error = task.parse_output('{"category": "shipping", "priority": "medium", "reply": "..."}')
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

CATEGORIES = ("billing", "shipping", "account", "defect", "technical", "cancellation", "other")
PRIORITIES = ("low", "medium", "high", "urgent")

Category = Literal["billing", "shipping", "account", "defect", "technical", "cancellation", "other"]
Priority = Literal["low", "medium", "high", "urgent"]

# The teacher gets the instructions; the allowed values travel as a JSON schema too (``response_format``), which
# OpenAI-compatible servers with structured outputs (vLLM, OpenAI, Azure) enforce while decoding. The student is
# fine-tuned on the bare inquiry (the instructions are distilled into its weights), so it never pays for them.
SYSTEM_PROMPT = "問い合わせを分類し、category・priority・replyのJSONだけで答えてください。"
AUGMENT_PROMPT = (
    "Write one new, realistic Japanese customer-support inquiry of category {category}. Example:\n{example}"
)


class Label(BaseModel):
    """The model's answer. ``reply`` must be non-empty Japanese-ish text."""

    model_config = ConfigDict(extra="forbid")
    category: Category
    priority: Priority
    reply: str = Field(min_length=1, max_length=400)


class Expected(BaseModel):
    """What an evaluation file gives per line; ``reply`` is optional there."""

    model_config = ConfigDict(extra="ignore")
    category: Category
    priority: Priority
    reply: str | None = None


def build_messages(text: str) -> list[dict[str, str]]:
    """The student's prompt: the inquiry alone."""
    return [{"role": "user", "content": text}]


def build_teacher_messages(text: str) -> list[dict[str, str]]:
    """The teacher's prompt: instructions + the inquiry."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]


def build_augment_messages(category: str, example: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": AUGMENT_PROMPT.format(category=category, example=example)}]


def response_format() -> dict[str, Any]:
    """OpenAI ``response_format`` asking for exactly the ``Label`` schema (enums included)."""
    schema = Label.model_json_schema()
    schema["additionalProperties"] = False
    return {"type": "json_schema", "json_schema": {"name": "ticket_triage", "schema": schema, "strict": True}}


def format_output(label: dict[str, Any]) -> str:
    """The canonical target string the student is trained to emit."""
    return json.dumps(
        {"category": label["category"], "priority": label["priority"], "reply": label["reply"]},
        ensure_ascii=False,
    )


def parse_output(text: str) -> tuple[Label | None, str | None]:
    """Parse a model's raw output. Returns ``(label, None)`` or ``(None, reject_reason)``."""
    stripped = text.strip()
    if not stripped:
        return None, "empty"
    if stripped.startswith("```"):  # tolerate a markdown fence, as real LLMs often add one
        stripped = stripped.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError:
        return None, "invalid_json"
    if not isinstance(data, dict):
        return None, "invalid_json"
    try:
        return Label.model_validate(data), None
    except ValidationError:
        return None, "schema_violation"


def prompt_template_text() -> str:
    """Everything that shapes the prompt; its hash goes into cache keys and provenance."""
    return SYSTEM_PROMPT + "\n" + AUGMENT_PROMPT


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu

    if not hypotheses:
        return 0.0
    # char_order=6 on raw characters suits Japanese, which has no spaces to split words on.
    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


def compute_metrics(outputs: Sequence[str], expected: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Category/priority accuracy and JSON validity over all rows; chrF over rows with a reference reply."""
    n = len(outputs)
    parsed = [parse_output(o)[0] for o in outputs]
    gold = [Expected.model_validate(e) for e in expected]
    cat = sum(1 for p, g in zip(parsed, gold, strict=True) if p is not None and p.category == g.category)
    pri = sum(1 for p, g in zip(parsed, gold, strict=True) if p is not None and p.priority == g.priority)
    valid = sum(1 for p in parsed if p is not None)
    pairs = [(p.reply if p else "", g.reply) for p, g in zip(parsed, gold, strict=True) if g.reply]
    metrics = {
        "n": float(n),
        "category_accuracy": cat / n if n else 0.0,
        "priority_accuracy": pri / n if n else 0.0,
        "json_valid_rate": valid / n if n else 0.0,
    }
    if pairs:
        metrics["reply_chrf"] = chrf([h for h, _ in pairs], [r for _, r in pairs])
    return metrics
