"""Finetune stage: QLoRA, LoRA or full fine-tuning of the student with TRL's ``SFTTrainer``.

Usage:
    slmops stage finetune --profile demo
    slmops stage finetune --profile demo --processes 2     # accelerate launch (slmops.train.launch): DDP, or
                                                           # FSDP with finetune.method: full (slmops.train.fsdp)

``finetune.method: auto`` (the default) is QLoRA on CUDA and LoRA on a CPU (``slmops.train.method``);
``gkd`` / ``kd`` learn a local teacher's token distributions instead (``slmops.train.distill``).

``finetune.base_model`` is a hub id or a local folder (the demo points it at its own tiny base model).
QLoRA loads the base in 4-bit nf4 through bitsandbytes (on CPU too) and trains LoRA adapters; the adapters
are then merged into a full-precision copy of the base so the next stage exports one plain model folder.
Writes the merged model + tokenizer, ``adapter/`` (LoRA methods), ``log_history.json`` and ``loss_curve.png``.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slmops.config import DISTILL_METHODS, FinetuneConfig, TeacherConfig, TrainingConfig
from slmops.io import load_jsonl, write_manifest
from slmops.tasks import Task
from slmops.train.base import load_base, lora_config
from slmops.train.distill import distill_args, distill_records, train_gkd
from slmops.train.distill import teacher_model_dir as distill_teacher
from slmops.train.fsdp import full_state_dict, is_sharded, keep_fsdp_on_cpu
from slmops.train.method import choose_method
from slmops.train.schedule import choose_epochs, undertrained


class FinetuneResult(BaseModel):
    model_dir: Path
    method: str  # the method that ran (``auto`` resolved)
    method_reason: str = ""  # one line: why that method
    train_examples: int
    trainable_params: int
    total_params: int
    final_train_loss: float | None
    eval_loss: float | None
    global_step: int = 0
    parallel: str = "none"  # how several processes trained: ddp (a full copy per rank) or fsdp (sharded weights)
    resumed_from_step: int | None = None  # the checkpoint ``finetune.resume`` continued from
    epochs: float  # what the run trained for (``auto``: chosen from the train rows; max_steps: what it amounts to)
    epochs_reason: str  # one line: why that many
    warning: str | None = None  # ``undertrained``'s message, when the run looks under-trained
    log_history: list[dict[str, Any]]


def sft_records(task: Task, rows: list[dict[str, Any]], teacher: bool = False) -> list[dict[str, Any]]:
    """Task rows (``input`` + ``expected``) to TRL's conversational prompt-completion format."""
    prompt = task.build_teacher_messages if teacher else task.build_messages
    return [
        {
            "prompt": prompt(r["input"]),
            "completion": [{"role": "assistant", "content": task.format_output(r["expected"])}],
        }
        for r in rows
    ]


def training_args(
    cfg: TrainingConfig, out_dir: Path, seed: int, n_train: int | None = None, config_cls=None, **extra: Any
):
    """``trl.SFTConfig`` (or ``config_cls``, a subclass such as ``GKDConfig``) from the declared fields, then
    ``cfg``'s pass-through keys, then ``extra`` (the stage's).

    ``epochs: auto`` becomes a number from ``n_train`` (the train rows; ``schedule.choose_epochs``)."""
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    kwargs: dict[str, Any] = {
        "output_dir": str(out_dir / "checkpoints"),
        "num_train_epochs": choose_epochs(cfg, n_train)[0],
        "max_steps": cfg.max_steps,
        "per_device_train_batch_size": cfg.batch_size,
        "per_device_eval_batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "adam_beta2": cfg.adam_beta2,
        "warmup_ratio": cfg.warmup_ratio,
        "weight_decay": cfg.weight_decay,
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "max_length": cfg.max_length,
        "logging_steps": cfg.logging_steps,
        "save_strategy": "steps" if cfg.save_steps else "no",
        "save_steps": cfg.save_steps or 500,
        "save_total_limit": cfg.save_total_limit,
        "report_to": "none",
        "seed": seed,
        "use_cpu": not cuda,
        "bf16": cuda and torch.cuda.is_bf16_supported(),  # CPU: plain fp32, no autocast
        "disable_tqdm": True,  # src/slmops/progress.py draws one quiet bar instead
        "dataloader_num_workers": 0,
        # Several processes (DDP): every trainable parameter takes part in every step, so DDP need not search
        # the graph for unused ones each step (transformers' default for a model with frozen parts).
        "ddp_find_unused_parameters": False,
    }
    if cfg.eval_steps:
        kwargs |= {"eval_strategy": "steps", "eval_steps": cfg.eval_steps}
    kwargs |= _speed_args(cfg)
    if cfg.early_stopping_patience:  # the best checkpoint is kept and loaded back at the end
        kwargs |= {"load_best_model_at_end": True, "metric_for_best_model": "eval_loss", "greater_is_better": False}
        kwargs |= {"save_strategy": "steps", "save_steps": cfg.eval_steps}
    return (config_cls or SFTConfig)(**(kwargs | cfg.extra | extra))


def _speed_args(cfg: TrainingConfig) -> dict[str, Any]:
    """The throughput switches as ``SFTConfig`` keys (all off: TRL's and transformers' defaults)."""
    kwargs: dict[str, Any] = {
        "auto_find_batch_size": cfg.auto_find_batch_size,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "use_liger_kernel": cfg.use_liger_kernel,
    }
    if cfg.packing:  # best-fit decreasing packing is padding-free in TRL: position ids mark each example
        kwargs |= {"packing": True, "packing_strategy": "bfd", "padding_free": True}
    if cfg.gradient_checkpointing:  # the non-reentrant form works with frozen bases (LoRA) and DDP
        kwargs["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    return kwargs


def train_sft(
    model,
    tokenizer,
    train: list[dict],
    val: list[dict] | None,
    args,
    peft_config=None,
    *,
    callbacks: list | None = None,
    resume_from: str | None = None,
    desc: str = "train",
):
    """Run ``SFTTrainer`` and return ``(trainer, log_history)``. Shared by the student and the demo teacher."""
    from datasets import Dataset
    from trl import SFTTrainer

    from slmops.progress import quiet

    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(val) if val else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    quiet(trainer, desc)
    keep_fsdp_on_cpu(trainer)  # a no-op unless the launcher asked for FSDP (full fine-tuning in N processes)
    trainer.train(resume_from_checkpoint=resume_from)
    return trainer, trainer.state.log_history


def plot_loss(log_history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in log_history if "loss" in h]
    losses = [h["loss"] for h in log_history if "loss" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, label="train loss")
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def last_checkpoint(out_dir: Path) -> str | None:
    """The newest complete ``checkpoint-<step>`` folder under ``out_dir/checkpoints``, if any."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = out_dir / "checkpoints"
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def _callbacks(cfg: TrainingConfig) -> list:
    if not cfg.early_stopping_patience:
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(cfg.early_stopping_patience, cfg.early_stopping_threshold)]


def run(
    cfg: FinetuneConfig,
    *,
    task: Task,
    train: Path,
    val: Path | None,
    base_model: str,
    out_dir: Path,
    seed: int = 42,
    teacher: TeacherConfig | None = None,
    init_adapter: Path | None = None,
) -> FinetuneResult:
    """Train (resuming from the newest checkpoint when ``cfg.resume``; LoRA: on from ``init_adapter`` when given),
    merge and save (rank 0 only, when several processes train). ``teacher``: for ``gkd`` and ``kd`` only."""
    import torch
    from transformers import AutoTokenizer, set_seed

    method, method_reason = choose_method(cfg.method, torch.cuda.is_available())
    cfg = cfg.model_copy(update={"method": method})
    _say(f"  finetune method {method}  ({method_reason})")
    set_seed(seed)
    distill = method in DISTILL_METHODS
    weights = cfg.model_copy(update={"method": cfg.distill.adapter}) if distill else cfg  # what trains
    teacher_dir = distill_teacher(teacher, base_model, method) if distill else None
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    adapters = weights.method in ("qlora", "lora")
    model = load_base(weights, base_model, init_adapter if adapters else None)
    peft_config = lora_config(cfg) if adapters and init_adapter is None else None
    records = distill_records if distill else sft_records
    train_rows = records(task, load_jsonl(train))
    val_rows = records(task, load_jsonl(val)) if val else None
    if cfg.training.eval_steps and not val_rows:
        raise ValueError("finetune.training.eval_steps / early stopping need a validation set")
    resume_from = last_checkpoint(out_dir) if cfg.resume else None
    if not cfg.resume and _is_main():
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # a fresh run never mixes in old ones
    epochs, why = choose_epochs(cfg.training, len(train_rows))
    _say(f"  finetune epochs {epochs:g}  ({why})")
    args = training_args(cfg.training, out_dir, seed, len(train_rows), **(distill_args(cfg) if distill else {}))
    train_fn = partial(train_gkd, teacher_dir) if distill else train_sft
    trainer, history = train_fn(
        model,
        tokenizer,
        train_rows,
        val_rows,
        args,
        peft_config,
        callbacks=_callbacks(cfg.training),
        resume_from=resume_from,
        desc=cfg.method,
    )
    step = trainer.state.global_step
    if val_rows and not any("eval_loss" in h and h.get("step") == step for h in history):
        trainer.evaluate()  # logged into ``history`` (the trainer's own log) with its step
    warning = undertrained(history, cfg.training)
    if warning:
        _say(f"WARNING: {warning}")
    resumed = int(Path(resume_from).name.rsplit("-", 1)[-1]) if resume_from else None
    schedule = {"resumed_from_step": resumed, "epochs": epochs, "epochs_reason": why, "warning": warning}
    schedule |= {"method_reason": method_reason}
    return _save(cfg, trainer, tokenizer, history, base_model, out_dir, adapters, len(train_rows), schedule)


def _is_main() -> bool:
    """Rank 0, or the only process (under ``accelerate launch`` every rank runs this stage's code)."""
    return os.environ.get("RANK", "0") == "0"


def _say(line: str) -> None:
    """One console line, from the main process only."""
    if _is_main():
        print(line, flush=True)


def _save(cfg, trainer, tokenizer, history, base_model, out_dir: Path, adapters: bool, n_train: int, schedule):
    """The result on every rank; the files (adapter, merged model, log, plot, manifest) from rank 0 only.
    FSDP: every rank sends its shards and rank 0 writes the gathered weights into a fresh copy of the base."""
    trained = trainer.model
    sharded = is_sharded(trained)
    weights = full_state_dict(trainer) if sharded else None  # a collective: before the rank-0-only part
    losses = [h["loss"] for h in history if "loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    result = FinetuneResult(
        model_dir=out_dir,
        method=cfg.method,
        train_examples=n_train,
        trainable_params=sum(p.numel() for p in trained.parameters() if p.requires_grad),
        total_params=sum(p.numel() for p in trained.parameters()),
        final_train_loss=losses[-1] if losses else None,
        eval_loss=evals[-1] if evals else None,
        global_step=trainer.state.global_step,
        parallel="fsdp" if sharded else "ddp" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "none",
        log_history=history,
        **schedule,
    )
    if _is_main():
        _write_model(trained, tokenizer, base_model, out_dir, adapters, weights)
        (out_dir / "log_history.json").write_text(json.dumps(history, indent=1))
        plot_loss(history, out_dir / "loss_curve.png")
        write_manifest(out_dir, stage="finetune", **result.model_dump(exclude={"log_history", "model_dir"}))
    return result


def _write_model(trained, tokenizer, base_model: str, out_dir: Path, adapters: bool, weights: dict | None) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    # A LoRA run's adapter left beside a full fine-tune's weights would be read back as this model's (parity does).
    shutil.rmtree(out_dir / "adapter", ignore_errors=True)
    if adapters:
        from peft import PeftModel

        trained.save_pretrained(out_dir / "adapter")
        # Merge into a full-precision copy of the base: the next stage exports one plain model folder.
        base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, out_dir / "adapter").merge_and_unload()
    elif weights is not None:  # FSDP: the model itself holds shards (and a wrapper class name config would keep)
        merged = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
        merged.load_state_dict(weights, strict=True)
    else:
        merged = trained
    merged.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
