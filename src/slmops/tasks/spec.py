"""A task spec (YAML) turned into everything the pipeline needs: schema, prompts, parser, metrics, features.

Usage:
    from slmops.tasks import load_task
    task = load_task("ticket_triage", root)           # <project>/tasks/ticket_triage.yaml
    task.build_messages("注文した商品がまだ届きません。")   # what the student sees
    label, reason = task.parse_output('{"category": "shipping", ...}')
    task.compute_metrics(outputs, expected)           # {"category_accuracy": ..., "reply_chrf": ..., ...}

A spec declares the input, the output fields (``enum``, ``labels`` (multi-label), ``text``, ``integer``,
``number``), the teacher's instructions, the student's prompt template and the metrics per field. Metric
names are ``<field>_<metric>`` plus ``json_valid_rate`` and ``exact_match`` for the whole object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from slmops.tasks import metrics as m

FieldType = Literal["enum", "labels", "text", "integer", "number"]
MetricName = Literal["accuracy", "macro_f1", "micro_f1", "set_accuracy", "chrf", "mae"]
ALLOWED_METRICS: dict[str, set[str]] = {
    "enum": {"accuracy", "macro_f1"},
    "labels": {"micro_f1", "set_accuracy"},
    "text": {"chrf"},
    "integer": {"accuracy", "mae"},
    "number": {"mae"},
}
DEFAULT_METRICS = {
    "enum": ["accuracy"],
    "labels": ["micro_f1"],
    "text": ["chrf"],
    "integer": ["mae"],
    "number": ["mae"],
}


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: FieldType
    description: str = ""
    values: list[str] | None = None  # enum, labels: the allowed values
    minimum: float | None = None  # integer, number
    maximum: float | None = None
    min_length: int = Field(1, ge=0)  # text
    max_length: int = Field(400, ge=1)
    required: bool = True  # must reference labels (evaluation files) give it? Model outputs always must.
    metrics: list[MetricName] | None = None  # None: the type's default

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.type in ("enum", "labels") and not self.values:
            raise ValueError(f"a field of type {self.type!r} needs 'values'")
        if self.type not in ("enum", "labels") and self.values is not None:
            raise ValueError(f"'values' only applies to enum and labels fields, not {self.type!r}")
        bad = set(self.metrics or []) - ALLOWED_METRICS[self.type]
        if bad:
            raise ValueError(
                f"metric(s) {sorted(bad)} do not apply to a {self.type} field; use {ALLOWED_METRICS[self.type]}"
            )
        return self

    @property
    def metric_names(self) -> list[str]:
        return list(self.metrics if self.metrics is not None else DEFAULT_METRICS[self.type])


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    input_field: str = "input"  # the input's name in the spec and (by default) in data files
    output: dict[str, FieldSpec] = Field(min_length=1)
    teacher_instructions: str = Field(min_length=1)  # the teacher's system prompt
    student_prompt: str = "{input}"  # the student's user message; the instructions are distilled into its weights
    # Self-instruct: the teacher writes new inputs for one value of ``stratify_by`` from an example.
    augment_prompt: str | None = None
    # Contrast rows: the teacher rewrites a training input as little as it can so ``stratify_by`` becomes
    # ``{label}`` (``synthesize.contrast_rows``; see slmops.synthesize.contrast).
    contrast_prompt: str | None = None
    # An enum field whose values balance the training file and drive self-instruct (default: the first enum).
    stratify_by: str | None = None
    # Axes the teacher's new inputs are varied over (``{name: [values]}``), crossed with the ``stratify_by``
    # values; None: slmops.synthesize.grid's defaults (register, length, channel, noise); {}: none.
    synthesis_attributes: dict[str, list[str]] | None = None
    # The demo's offline stand-in data for this task: ``module:function(seed, n_seed, n_pool, n_test)``.
    demo_generator: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        if "{input}" not in self.student_prompt:
            raise ValueError("student_prompt must contain '{input}'")
        if self.stratify_by is not None and getattr(self.output.get(self.stratify_by), "type", None) != "enum":
            raise ValueError(f"stratify_by {self.stratify_by!r} must name an enum field of 'output'")
        if self.augment_prompt is not None and "{example}" not in self.augment_prompt:
            raise ValueError("augment_prompt must contain '{example}'")
        if self.contrast_prompt is not None and not all(k in self.contrast_prompt for k in ("{example}", "{label}")):
            raise ValueError("contrast_prompt must contain '{example}' and '{label}'")
        for name, values in (self.synthesis_attributes or {}).items():
            if not name.isidentifier() or name in self.output or not values or len(set(values)) != len(values):
                raise ValueError(
                    f"synthesis_attributes.{name}: an identifier that is no output field, with distinct values"
                )
        return self


def _python_type(field: FieldSpec) -> tuple[Any, Any]:
    if field.type == "enum":
        return Literal[tuple(field.values)], ...  # type: ignore[index, misc]
    if field.type == "labels":
        return list[Literal[tuple(field.values)]], ...  # type: ignore[index, misc]
    if field.type == "text":
        return str, Field(..., min_length=field.min_length, max_length=field.max_length)
    kind = int if field.type == "integer" else float
    return kind, Field(..., ge=field.minimum, le=field.maximum)


class Task:
    """One task, built from its spec. Subclass it (and name ``module:Class`` in params) for custom logic."""

    def __init__(self, spec: TaskSpec):
        self.spec, self.name, self.fields = spec, spec.name, spec.output
        strict = ConfigDict(extra="forbid")
        self.Label: type[BaseModel] = create_model(  # type: ignore[call-overload]
            f"{spec.name}_label", __config__=strict, **{k: _python_type(f) for k, f in spec.output.items()}
        )
        optional = {k: (t | None, None) for k, (t, _) in ((k, _python_type(f)) for k, f in spec.output.items())}
        self.Expected: type[BaseModel] = create_model(  # type: ignore[call-overload]
            f"{spec.name}_expected",
            __config__=ConfigDict(extra="ignore"),
            **{k: (_python_type(f) if f.required else optional[k]) for k, f in spec.output.items()},
        )
        enums = [k for k, f in spec.output.items() if f.type == "enum"]
        self.stratify_by: str | None = spec.stratify_by or (enums[0] if enums else None)
        self.text_fields = [k for k, f in spec.output.items() if f.type == "text"]

    # ------------------------------------------------------------ prompts
    def build_messages(self, text: str) -> list[dict[str, str]]:
        """The student's prompt."""
        return [{"role": "user", "content": self.spec.student_prompt.format(input=text)}]

    def build_teacher_messages(self, text: str) -> list[dict[str, str]]:
        """The teacher's prompt: instructions + the input."""
        return [{"role": "system", "content": self.spec.teacher_instructions}, {"role": "user", "content": text}]

    def build_augment_messages(
        self, value: str | None, example: str, attributes: dict[str, str] | None = None
    ) -> list[dict[str, str]]:
        """The self-instruct prompt; ``attributes`` (a grid cell) fill ``{attributes}``, or a last line
        ``Attributes: register=keigo, channel=mail`` when the template has no such placeholder."""
        if self.spec.augment_prompt is None:
            raise ValueError(f"task {self.name!r} has no augment_prompt: set synthesize.augment_per_category: 0")
        fields = {self.stratify_by: value} if self.stratify_by else {}
        described = ", ".join(f"{k}={v}" for k, v in (attributes or {}).items())
        template = self.spec.augment_prompt
        content = template.format(example=example, attributes=described, **fields)
        if described and "{attributes}" not in template:
            content += f"\nAttributes: {described}"
        return [{"role": "user", "content": content}]

    def build_contrast_messages(self, label: str, example: str) -> list[dict[str, str]]:
        """The contrast prompt: rewrite ``example`` so that its ``stratify_by`` value is ``label``."""
        if self.spec.contrast_prompt is None:
            raise ValueError(f"task {self.name!r} has no contrast_prompt: set synthesize.contrast_rows: 0")
        return [{"role": "user", "content": self.spec.contrast_prompt.format(example=example, label=label)}]

    def prompt_template_text(self) -> str:
        """The prompts' templates; their hash goes into cache keys and provenance, and the demo's tokenizer trains
        on this text. A contrast request carries its whole template in its text, so ``contrast_prompt`` is not
        here: adding it changed the smoke tokenizer's 512 tokens, and with them the smoke student."""
        return "\n".join([self.spec.teacher_instructions, self.spec.student_prompt, self.spec.augment_prompt or ""])

    def response_format(self) -> dict[str, Any]:
        """OpenAI ``response_format`` asking for exactly the label schema (enums included)."""
        schema = self.Label.model_json_schema()
        schema["additionalProperties"] = False
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": schema, "strict": True}}

    # ------------------------------------------------------------ outputs
    def format_output(self, label: dict[str, Any]) -> str:
        """The canonical target string the student is trained to emit (fields in spec order)."""
        return json.dumps({k: label[k] for k in self.fields}, ensure_ascii=False)

    def parse_output(self, text: str | None) -> tuple[BaseModel | None, str | None]:
        """Parse a model's raw output: ``(label, None)`` or ``(None, reject_reason)``."""
        stripped = (text or "").strip()
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
            return self.Label.model_validate(data), None
        except ValidationError:
            return None, "schema_violation"

    def label_key(self, text: str | None) -> tuple | None:
        """What the answer decides, comparable across models: its enum, labels (as a set) and integer fields;
        free text and numbers are left out. A task with none of them compares the whole answer. None when the
        output does not parse. Parity's label agreement compares these (``src/slmops/evaluate/parity.py``)."""
        parsed = self.parse_output(text)[0]
        if parsed is None:
            return None
        dump = parsed.model_dump(mode="json")
        decided = [k for k, f in self.fields.items() if f.type in ("enum", "labels", "integer")]
        if not decided:
            return tuple(sorted(dump.items(), key=str))
        return tuple((k, tuple(sorted(dump[k])) if self.fields[k].type == "labels" else dump[k]) for k in decided)

    def validate_expected(self, data: Any) -> dict[str, Any]:
        """A reference label from a data file, checked against the spec; raises ``ValidationError``."""
        return self.Expected.model_validate(data).model_dump(exclude_none=True)

    def class_of(self, expected: dict[str, Any]) -> str | None:
        return expected.get(self.stratify_by) if self.stratify_by else None

    def output_features(self, output: str | None) -> dict[str, Any]:
        """Columns a drift test compares: every enum field's value (or "invalid") and JSON validity."""
        label = self.parse_output(output)[0] if output is not None else None
        values = label.model_dump() if label is not None else {}
        features: dict[str, Any] = {k: values.get(k, "invalid") for k, f in self.fields.items() if f.type == "enum"}
        return features | {"json_valid": "yes" if label is not None else "no"}

    @property
    def feature_columns(self) -> list[str]:
        return [k for k, f in self.fields.items() if f.type == "enum"] + ["json_valid"]

    # ------------------------------------------------------------ metrics
    @property
    def metric_names(self) -> list[str]:
        """Every metric ``compute_metrics`` can report (gates may name these)."""
        per_field = [f"{k}_{metric}" for k, f in self.fields.items() for metric in f.metric_names]
        return ["json_valid_rate", "exact_match", *per_field]

    def compute_metrics(self, outputs: Sequence[str], expected: Sequence[dict[str, Any]]) -> dict[str, float]:
        """Per-field metrics over all rows (an invalid output counts as wrong) plus validity and exact match."""
        n = len(outputs)
        parsed = [(p.model_dump() if (p := self.parse_output(o)[0]) is not None else None) for o in outputs]
        gold = [self.validate_expected(e) for e in expected]
        valid = sum(p is not None for p in parsed)
        result = {"n": float(n), "json_valid_rate": valid / n if n else 0.0}
        rows = list(zip(parsed, gold, strict=True))
        exact = sum(p is not None and all(p.get(k) == v for k, v in g.items()) for p, g in rows)
        result["exact_match"] = exact / n if n else 0.0
        for name, field in self.fields.items():
            pairs = [((p or {}).get(name), g[name]) for p, g in rows if name in g]
            for metric in field.metric_names:
                value = m.compute(metric, pairs, field.values)
                if value is not None:
                    result[f"{name}_{metric}"] = value
        return result


def check_spec(data: dict[str, Any], source: str) -> TaskSpec:
    """Validate a spec dict, with errors that name the file and the key."""
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as err:
        lines = [
            f"{source}: {'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in err.errors()
        ]
        raise ValueError("invalid task spec:\n  " + "\n  ".join(lines)) from None
