"""Build the demo's tiny student base model offline, on two CPU cores: it stands in for a hub SLM.

Usage:
    slmops demo build --profile demo        # data -> tokenizer -> this base model

A Llama-style decoder (~1M params) pretrained on the generated training-side text (seed + pool inputs, PII
masked as the pipeline will see them; never the test set), so fine-tuning starts from a model that already
knows the domain's language, as a real base model would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel

from slmops.config import DemoConfig, SourceConfig, TinyModelConfig, TrainingConfig
from slmops.io import load_jsonl, write_manifest
from slmops.tasks import Task
from slmops.text import pii
from slmops.train.finetune import plot_loss, train_sft, training_args


class DemoModelResult(BaseModel):
    model_dir: Path
    params: int
    final_loss: float | None


def init_model(cfg: TinyModelConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        intermediate_size=cfg.intermediate_size,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config)


def pretrain(model, tokenizer, texts: list[str], cfg: TrainingConfig, out_dir: Path, seed: int):
    """Causal-LM pretraining on raw text, packed into fixed-length blocks."""
    rows = [{"text": t + tokenizer.eos_token} for t in texts]
    args = training_args(cfg, out_dir, seed, packing=True, packing_strategy="wrapped", dataset_text_field="text")
    return train_sft(model, tokenizer, rows, None, args, desc="pretrain")


def generated_rows(task: Task, raw_dir: Path, name: str) -> list[dict]:
    """A generated file's rows in the task's terms (``input``, ``expected``), as prepare would map them."""
    from slmops.data.prepare import map_record

    src = SourceConfig(path=str(raw_dir / f"{name}.jsonl"))
    return [map_record(row, src, task) for row in load_jsonl(raw_dir / f"{name}.jsonl")]


def training_texts(task: Task, raw_dir: Path) -> list[str]:
    """The generated seed and pool inputs, and the general corpus when the generator wrote one, masked as
    prepare masks them (the test file is never read)."""
    names = ("pool", "seed", "corpus") if (raw_dir / "corpus.jsonl").exists() else ("pool", "seed")
    return [pii.mask(r["input"]) for name in names for r in generated_rows(task, raw_dir, name)]


def build_base(
    demo: DemoConfig, task: Task, *, tokenizer_dir: Path, raw_dir: Path, out_dir: Path, seed: int
) -> DemoModelResult:
    from transformers import AutoTokenizer, set_seed

    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = init_model(demo.student, tokenizer)
    history = pretrain(model, tokenizer, training_texts(task, raw_dir), demo.pretrain, out_dir, seed)[1]
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    plot_loss(history, out_dir / "loss_curve.png")
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    losses = [h["loss"] for h in history if "loss" in h]
    result = DemoModelResult(
        model_dir=out_dir, params=sum(p.numel() for p in model.parameters()), final_loss=losses[-1] if losses else None
    )
    write_manifest(out_dir, stage="demo_student_base", **result.model_dump(exclude={"model_dir"}))
    return result
