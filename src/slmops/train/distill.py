"""Logit distillation: the student learns a local teacher's token distributions through TRL's ``GKDTrainer``.

Usage (params):
    finetune: {method: gkd, distill: {lmbda: 0.5, beta: 0.5, adapter: lora}}      # or method: kd
    synthesize: {teacher: {kind: transformers, model: models/teacher}}            # shares the student's tokenizer

``gkd`` (Agarwal et al., 2024): with probability ``lmbda`` a step trains on the student's own sampled answer,
else on the training row's answer; the loss is the generalized Jensen-Shannon divergence between the teacher's
and the student's next-token distributions over the answer tokens (``beta`` 0: forward KL(teacher || student),
1: reverse KL). ``kd`` is GKD with lmbda 0 and beta 0: forward KL to the teacher on the rows' answers.
The teacher reads the student's prompt token for token, so it must share the student's vocabulary.
"""

from __future__ import annotations

import warnings
from typing import Any

from slmops.config import FinetuneConfig, TeacherConfig
from slmops.tasks import Task


def teacher_model_dir(teacher: TeacherConfig | None, base_model: str, method: str) -> str:
    """The teacher's model folder, once its tokenizer is known to match the student's; else a ``ValueError``
    naming ``synthesize.teacher.model`` and ``finetune.base_model``."""
    from transformers import AutoConfig, AutoTokenizer

    if teacher is None or teacher.kind != "transformers":
        kind = None if teacher is None else teacher.kind
        raise ValueError(f"finetune.method {method} needs synthesize.teacher.kind: transformers, not {kind}")
    theirs = AutoTokenizer.from_pretrained(teacher.model).get_vocab()
    ours = AutoTokenizer.from_pretrained(base_model).get_vocab()
    sizes = (AutoConfig.from_pretrained(teacher.model).vocab_size, AutoConfig.from_pretrained(base_model).vocab_size)
    if theirs != ours or sizes[0] != sizes[1]:
        differ = sum(theirs.get(token) != ours.get(token) for token in theirs.keys() | ours.keys())
        raise ValueError(
            f"finetune.method {method} compares the teacher's and the student's next-token distributions, so they "
            f"must share one tokenizer: synthesize.teacher.model {teacher.model!r} has {len(theirs)} tokens "
            f"(vocab_size {sizes[0]}), finetune.base_model {base_model!r} has {len(ours)} (vocab_size {sizes[1]}); "
            f"{differ} tokens differ. Use finetune.method lora, qlora or full (SFT on the teacher's answers) instead"
        )
    return teacher.model


def distill_records(task: Task, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Task rows to the ``messages`` format GKD's collator reads: the student's prompt, then the answer."""
    return [
        {
            "messages": [
                *task.build_messages(r["input"]),
                {"role": "assistant", "content": task.format_output(r["expected"])},
            ]
        }
        for r in rows
    ]


def gkd_classes():
    with warnings.catch_warnings():  # "APIs here are unstable": the pinned trl version is the one tested
        warnings.simplefilter("ignore")
        from trl.experimental.gkd import GKDConfig, GKDTrainer
    return GKDConfig, GKDTrainer


def distill_args(cfg: FinetuneConfig) -> dict[str, Any]:
    """The ``GKDConfig`` class and its keys for ``finetune.training_args`` (``kd``: lmbda 0, beta 0)."""
    d, on_policy = cfg.distill, cfg.method == "gkd"
    return {
        "config_cls": gkd_classes()[0],
        "lmbda": d.lmbda if on_policy else 0.0,
        "beta": d.beta if on_policy else 0.0,
        "temperature": d.temperature,
        "max_new_tokens": d.max_new_tokens,
    }


def train_gkd(
    teacher: str,
    model,
    tokenizer,
    train: list[dict],
    val: list[dict] | None,
    args,
    peft_config=None,
    *,
    callbacks: list | None = None,
    resume_from: str | None = None,
    desc: str = "gkd",
):
    """Run ``GKDTrainer`` against the teacher at ``teacher`` and return ``(trainer, log_history)``."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from slmops.progress import quiet

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    teacher_model = AutoModelForCausalLM.from_pretrained(teacher, dtype=torch.bfloat16 if bf16 else torch.float32)
    trainer = gkd_classes()[1](
        model=model,
        teacher_model=teacher_model,
        args=args,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(val) if val else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    quiet(trainer, desc)
    trainer.train(resume_from_checkpoint=resume_from)
    return trainer, trainer.state.log_history
