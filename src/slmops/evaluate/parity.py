"""Parity along the chain trained -> merged -> ONNX fp32 -> quantized -> served, example by example.

Usage:
    chain = [ParityModel.local("trained", adapter_model(base, adapter)), ParityModel.local("merged", merged),
             ParityModel.local("onnx_fp32", onnx_fp32), ParityModel.local("int8", int8, fp32=False),
             ParityModel.http("served_int8", base_url, "student")]
    figures = compare_chain(prompts, chain, task, max_tokens=96)
    decision = decide_parity(figures, ParityThresholds())   # a gates.Decision naming the step that diverged

Each step is compared with the step before it (or with its ``reference``: every quantized candidate form is
compared with ONNX fp32, and its server with it): greedy output agreement (identical text), label agreement
(the task's categorical fields, via ``task.parse_output``) and, when both steps are fp32, the largest
absolute difference between their logits over the prompt (the prefill). The first step under a threshold
is the one that diverged. ``figures.flat()`` gives the numbers for MLflow; ``decide_parity(..., form="int4")``
judges the shared steps plus that form's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slmops.config import ParityThresholds
from slmops.registry.gates import Decision

Messages = list[dict[str, str]]


class ParityModel:
    """One named step: ``generate`` greedy answers; ``logits`` the prefill logits (fp32 steps, local only)."""

    def __init__(
        self,
        name: str,
        generate: Callable[[Messages, int], str],
        logits: Callable[[Messages], Any] | None = None,
        fp32: bool = False,
        reference: str | None = None,
    ):
        self.name, self.generate, self.logits, self.fp32 = name, generate, logits, fp32
        self.reference = reference  # the step it is compared with; None: the one before it in the chain

    @classmethod
    def local(cls, name: str, chat_model, fp32: bool = True, reference: str | None = None) -> ParityModel:
        """A ``slmops.inference.chat_model.ChatModel`` (transformers, peft or ONNX Runtime backend)."""

        def generate(messages: Messages, max_tokens: int) -> str:
            return chat_model.chat(messages, max_tokens=max_tokens, temperature=0.0).text

        return cls(name, generate, lambda messages: prefill_logits(chat_model, messages), fp32, reference)

    @classmethod
    def http(
        cls, name: str, base_url: str, model: str, timeout_s: float = 120.0, reference: str | None = None
    ) -> ParityModel:
        """An OpenAI-compatible endpoint (a real ``slmops serve``): answers only, no logits."""
        import httpx

        def generate(messages: Messages, max_tokens: int) -> str:
            body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0}
            response = httpx.post(f"{base_url.rstrip('/')}/chat/completions", json=body, timeout=timeout_s)
            response.raise_for_status()
            return response.json()["choices"][0]["message"]["content"]

        return cls(name, generate, reference=reference)


def prefill_logits(chat_model, messages: Messages):
    """The model's logits at every prompt position, as a float32 numpy array (positions x vocab)."""
    import torch

    ids = torch.tensor([chat_model.encode(messages)], device=chat_model.device)
    with torch.inference_mode():
        out = chat_model.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    logits = out.logits if hasattr(out, "logits") else out[0]
    return torch.as_tensor(logits)[0].float().cpu().numpy()


def adapter_model(base_model: str | Path, adapter_dir: str | Path):
    """The trained model before merging: the fp32 base with the LoRA adapter on top, as a ChatModel."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slmops.inference.chat_model import ChatModel

    base = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    return ChatModel(model, AutoTokenizer.from_pretrained(str(base_model)), "transformers", str(adapter_dir))


class StepFigures(BaseModel):
    step: str
    reference: str  # the step it is compared with (the one before it, or the step's own reference)
    examples: int
    output_agreement: float
    label_agreement: float
    max_prefill_logit_diff: float | None  # None unless both steps are fp32
    differing_examples: list[int]  # indices whose greedy answers differ


class ParityFigures(BaseModel):
    steps: list[StepFigures]

    def flat(self) -> dict[str, float]:
        out = {}
        for s in self.steps:
            out[f"parity.{s.step}.output_agreement"] = s.output_agreement
            out[f"parity.{s.step}.label_agreement"] = s.label_agreement
            if s.max_prefill_logit_diff is not None:
                out[f"parity.{s.step}.max_prefill_logit_diff"] = s.max_prefill_logit_diff
        return out


def label_of(task: Any, text: str) -> Any:
    """The answer's label (``Task.label_key``: enum, labels and integer fields; free text left out); None when
    it does not parse."""
    return task.label_key(text)


def compare_chain(
    prompts: Sequence[Messages], chain: Sequence[ParityModel], task: Any, max_tokens: int
) -> ParityFigures:
    """Answers (and fp32 prefill logits) of every step on every prompt, each step against its reference (by
    default the one before it)."""
    answers = {m.name: [m.generate(p, max_tokens) for p in prompts] for m in chain}
    labels = {name: [label_of(task, a) for a in texts] for name, texts in answers.items()}
    by_name = {m.name: m for m in chain}
    steps = []
    for previous, step in zip(chain, chain[1:], strict=False):
        before = by_name[step.reference] if step.reference else previous
        a, b = answers[before.name], answers[step.name]
        differing = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        same_label = sum(x == y for x, y in zip(labels[before.name], labels[step.name], strict=True))
        logit_diff = None
        if before.fp32 and step.fp32 and before.logits and step.logits:
            logit_diff = max(float(abs(before.logits(p) - step.logits(p)).max()) for p in prompts)
        n = max(len(prompts), 1)
        steps.append(
            StepFigures(
                step=step.name,
                reference=before.name,
                examples=len(prompts),
                output_agreement=1 - len(differing) / n,
                label_agreement=same_label / n,
                max_prefill_logit_diff=logit_diff,
                differing_examples=differing,
            )
        )
    return ParityFigures(steps=steps)


def decide_parity(figures: ParityFigures, thresholds: ParityThresholds, form: str | None = None) -> Decision:
    """Pass when every step agrees with its reference; the reasons name the first step that diverged. ``form``:
    judge only the steps shared by every form and that quantized form's own (``<form>``, ``served_<form>``)."""
    checks: dict[str, bool] = {}
    reasons: list[str] = []
    for s in figures.steps:
        if form is not None and _form_of(s.step) not in (None, form):
            continue
        failures = []
        if s.output_agreement < thresholds.min_output_agreement:
            shown = ", ".join(map(str, s.differing_examples[:10]))
            failures.append(
                f"greedy output agreement {s.output_agreement:.3f} < {thresholds.min_output_agreement} "
                f"(examples {shown})"
            )
        if s.label_agreement < thresholds.min_label_agreement:
            failures.append(f"label agreement {s.label_agreement:.3f} < {thresholds.min_label_agreement}")
        limit = thresholds.max_prefill_logit_diff
        if limit is not None and s.max_prefill_logit_diff is not None and s.max_prefill_logit_diff > limit:
            failures.append(f"max prefill logit difference {s.max_prefill_logit_diff:.3g} > {limit}")
        checks[f"parity_{s.step}"] = not failures
        if failures:
            reasons.append(f"parity: {s.step} diverged from {s.reference}: " + "; ".join(failures))
    return Decision(stage="parity", passed=not reasons, reasons=reasons, checks=checks)


SHARED_STEPS = ("trained", "merged", "onnx_fp32")


def _form_of(step: str) -> str | None:
    """The quantized form a step belongs to (``int4`` for ``int4`` and ``served_int4``); None for shared steps."""
    return None if step in SHARED_STEPS else step.removeprefix("served_")


class ParityResult(BaseModel):
    out_dir: Path
    figures: ParityFigures
    agreement: dict[str, float]  # figures.flat(): what MLflow shows per step


def run(
    task: Any,
    *,
    test: Path,
    base_model: str,
    student: Path,
    onnx_fp32: Path,
    quantized: dict[str, Path],
    out_dir: Path,
    serve: Callable[[Any], AbstractContextManager[Any]],
    max_tokens: int,
    examples: int = 50,
) -> ParityResult:
    """The chain for one pipeline run: trained (base + adapter, when LoRA/QLoRA wrote one) -> merged -> ONNX fp32,
    then every quantized form (``{"int8": folder, ...}``) against ONNX fp32 and that form behind a real HTTP
    server against the form, on the first ``examples`` test inputs. ``serve(chat_model)`` starts that server
    (a context manager whose value has ``base_url``): the flow passes ``slmops.serve.app.serve_in_background``."""
    import json
    from contextlib import ExitStack

    from slmops.inference.chat_model import ChatModel
    from slmops.io import load_jsonl, write_manifest
    from slmops.text import pii

    # As the server does (serve.mask_inputs), so every step reads the same text; prepared inputs are unchanged.
    prompts = [task.build_messages(pii.mask(r["input"], ner=False)) for r in load_jsonl(test)[:examples]]
    chain = (
        [ParityModel.local("trained", adapter_model(base_model, student / "adapter"))]
        if (student / "adapter" / "adapter_config.json").exists()
        else []
    )
    chain += [
        ParityModel.local("merged", ChatModel.load(student, device="cpu")),  # fp32, as ONNX fp32 is
        ParityModel.local("onnx_fp32", ChatModel.load(onnx_fp32)),
    ]
    with ExitStack() as servers:
        for form, folder in quantized.items():
            served = ChatModel.load(folder)
            chain.append(ParityModel.local(form, served, fp32=False, reference="onnx_fp32"))
            server = servers.enter_context(serve(served))
            chain.append(ParityModel.http(f"served_{form}", server.base_url, "student", reference=form))
        figures = compare_chain(prompts, chain, task, max_tokens)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "parity.json").write_text(json.dumps(figures.model_dump(), indent=1))
    write_manifest(out_dir, stage="parity", **figures.flat())
    return ParityResult(out_dir=out_dir, figures=figures, agreement=figures.flat())
