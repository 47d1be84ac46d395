"""Logit distillation (finetune.method gkd / kd): a tiny student learns a tiny teacher's token distributions
through TRL's GKDTrainer with LoRA; a teacher with another vocabulary, or one that is not local, is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from slmops.config import DistillParams, FinetuneConfig, LoraParams, Params, TrainingConfig, TransformersTeacherConfig
from slmops.io import load_jsonl
from slmops.tasks import load_task
from slmops.train.finetune import run
from tests.projects import TRIAGE

task = load_task("ticket_triage", TRIAGE)


def build_teacher(tokenizer_dir: Path, out_dir: Path, extra_token: str | None = None) -> Path:
    """A random tiny Llama from its config, wider than the student, sharing its tokenizer (or, with
    ``extra_token``, a tokenizer one token larger)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if extra_token:
        tokenizer.add_tokens([extra_token])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=96,
        num_hidden_layers=2,
        intermediate_size=192,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def divergences(student_dir: Path, teacher_dir: Path, rows: list[dict]) -> tuple[float, float]:
    """Per answer token of ``rows`` under the student's prompt: mean KL(teacher || student), and GKD's loss
    (the generalized JSD at beta 0.5, computed by TRL's own function)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slmops.train.distill import gkd_classes

    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    student, teacher = (AutoModelForCausalLM.from_pretrained(d).eval() for d in (student_dir, teacher_dir))
    kl, jsd, tokens = 0.0, 0.0, 0
    for row in rows:
        prompt = task.build_messages(row["input"])
        answer = {"role": "assistant", "content": task.format_output(row["expected"])}
        start = len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True))
        ids = torch.tensor([tokenizer.apply_chat_template([*prompt, answer], tokenize=True)])
        with torch.no_grad():
            s, t = (m(ids).logits[0, start - 1 : -1] for m in (student, teacher))
        kl += float((t.softmax(-1) * (t.log_softmax(-1) - s.log_softmax(-1))).sum())
        jsd += float(gkd_classes()[1].generalized_jsd_loss(s[None], t[None], beta=0.5, reduction="sum"))
        tokens += s.shape[0]
    return kl / tokens, jsd / tokens


@pytest.mark.slow
def test_gkd_moves_the_student_toward_the_teacher(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM

    prepared = tiny_models["prepared"]
    # The teacher knows something the random student does not: 40 full fine-tuning steps on the task (~25 s).
    teacher_init = build_teacher(tiny_models["tokenizer"], tmp_path / "teacher_init")
    training = TrainingConfig(max_steps=40, batch_size=8, learning_rate=5e-3, max_length=160)
    train = {"task": task, "train": prepared / "train.jsonl", "val": None}
    run(
        FinetuneConfig(method="full", training=training),
        base_model=str(teacher_init),
        out_dir=tmp_path / "teacher",
        **train,
    )
    teacher = tmp_path / "teacher"
    cfg = FinetuneConfig(
        method="gkd",
        distill=DistillParams(lmbda=0.5, beta=0.5, max_new_tokens=16),
        lora=LoraParams(r=8, alpha=16, modules_to_save=["embed_tokens"]),
        training=TrainingConfig(max_steps=30, batch_size=8, learning_rate=1e-2, max_length=160, logging_steps=2),
    )
    result = run(
        cfg,
        task=task,
        train=prepared / "train.jsonl",
        val=prepared / "val.jsonl",
        base_model=str(tiny_models["model"]),
        out_dir=tmp_path / "student",
        teacher=TransformersTeacherConfig(model=str(teacher)),
    )
    assert result.method == "gkd"
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    assert losses and all(loss == loss for loss in losses)  # logged, and no NaN
    assert result.trainable_params < result.total_params / 2  # LoRA on the student
    assert (tmp_path / "student" / "adapter" / "adapter_config.json").exists()

    before = AutoModelForCausalLM.from_pretrained(tiny_models["model"])
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "student")
    assert any(not torch.equal(p, before.get_parameter(n)) for n, p in after.named_parameters())

    # On held-out prompts (never trained on) the student's next-token distributions came closer to the teacher's:
    # GKD's own loss fell and so did KL(teacher || student) (measured: KL 3.58 -> 1.85 nats per
    # answer token, JSD 0.430 -> 0.307).
    held_out = load_jsonl(prepared / "test.jsonl")[:8]
    kl_before, jsd_before = divergences(tiny_models["model"], teacher, held_out)
    kl_after, jsd_after = divergences(tmp_path / "student", teacher, held_out)
    assert kl_after < kl_before * 0.8, (kl_before, kl_after)
    assert jsd_after < jsd_before * 0.9, (jsd_before, jsd_after)


@pytest.mark.slow
def test_a_teacher_with_another_vocabulary_is_refused_naming_the_keys(tiny_models, tmp_path):
    teacher = build_teacher(tiny_models["tokenizer"], tmp_path / "teacher", extra_token="<extra_tok>")
    prepared = tiny_models["prepared"]
    with pytest.raises(ValueError, match="synthesize.teacher.model") as err:
        run(
            FinetuneConfig(method="kd", training=TrainingConfig(max_steps=1)),
            task=task,
            train=prepared / "train.jsonl",
            val=None,
            base_model=str(tiny_models["model"]),
            out_dir=tmp_path / "student",
            teacher=TransformersTeacherConfig(model=str(teacher)),
        )
    assert "finetune.base_model" in str(err.value) and "1 tokens differ" in str(err.value)
    assert not (tmp_path / "student").exists()  # refused before any training


def test_distillation_needs_a_local_teacher_and_one_process():
    with pytest.raises(ValidationError, match="synthesize.teacher.kind must be transformers"):
        Params.model_validate({"task": "t", "finetune": {"method": "gkd"}})  # default teacher: openai
    with pytest.raises(ValidationError, match="finetune.processes: 1"):
        FinetuneConfig(method="kd", processes=2)
    teacher = {"kind": "transformers", "model": "models/teacher"}
    params = Params.model_validate({"task": "t", "finetune": {"method": "kd"}, "synthesize": {"teacher": teacher}})
    assert params.finetune.distill.beta == 0.5  # kd ignores it (forward KL), gkd reads it


def test_the_teacher_is_in_finetunes_cache_key_only_when_distilling(tmp_path):
    from slmops.config import load_params
    from slmops.flows.runner import cache_key
    from slmops.flows.stages import STAGES, Ctx, input_paths

    teacher = tmp_path / "teacher"
    teacher.mkdir()

    def finetune(method: str, model: str) -> tuple[str, list]:
        overrides = [f"finetune.method={method}", f"synthesize.teacher={{kind: transformers, model: {model}}}"]
        ctx = Ctx(load_params("smoke", project=TRIAGE, overrides=overrides), TRIAGE)
        return cache_key(STAGES["finetune"], ctx), input_paths(STAGES["finetune"], ctx)

    assert finetune("kd", str(teacher))[0] != finetune("kd", "other/teacher")[0]
    assert teacher in finetune("kd", str(teacher))[1]  # its files are hashed: new weights rerun it
    assert finetune("lora", str(teacher)) == finetune("lora", "other/teacher")  # SFT never reads the teacher
