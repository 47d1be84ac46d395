"""Fine-tuning (SFT hyper-parameters, LoRA, the 4-bit base) and the demo's tiny base model."""

from __future__ import annotations

import importlib.util
import math
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from slmops.config.base import SFT_MANAGED, PassThrough, Strict


class TrainingConfig(PassThrough):
    """Training hyper-parameters. Any other key is passed to ``trl.SFTConfig`` as is."""

    TARGET: ClassVar[str] = "trl:SFTConfig"
    RESERVED: ClassVar[dict[str, str]] = {
        "num_train_epochs": "epochs",
        "per_device_train_batch_size": "batch_size",
        "per_device_eval_batch_size": "batch_size",
        "output_dir": SFT_MANAGED,
        "seed": "project.seed",
        "save_strategy": "save_steps",
        "eval_strategy": "eval_steps / early_stopping_patience",
    }
    # ``auto`` (the default): enough epochs for about 300 optimizer steps on the real train rows, from 1 to
    # 30 (``slmops.train.schedule.auto_epochs``): a few hundred rows train many epochs, 20k rows train one.
    # A number (> 0) is used as is; ``max_steps`` > 0 wins over either, as in transformers.
    epochs: float | Literal["auto"] = "auto"
    batch_size: int = 16
    learning_rate: float = 1e-3
    max_length: int = 192
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_steps: int = -1
    # beta2 0.95 (as in LLaMA/GPT-3 training), not the 0.999 default: on the demo's tiny models the
    # category of an inquiry was learned at 99.5% vs 72.5% on validation after the same 450 steps.
    adam_beta2: float = 0.95
    lr_scheduler_type: str = "cosine"
    logging_steps: int = Field(5, ge=1)
    # Write a checkpoint (adapter/weights + optimizer + scheduler + RNG state) every this many steps, keeping
    # the newest ``save_total_limit``; ``finetune.resume`` continues from the newest. None: no checkpoints.
    save_steps: int | None = Field(None, ge=1)
    save_total_limit: int = Field(2, ge=1)
    # Evaluate on the validation set every this many steps (None: once, after training). Early stopping
    # stops after ``early_stopping_patience`` evaluations without an eval-loss improvement over the threshold.
    eval_steps: int | None = Field(None, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    early_stopping_threshold: float = Field(0.0, ge=0.0)
    # After training, warn (console, result ``warning``) when the final eval loss is above this (None: never
    # on the loss level alone), or when the loss still fell by over 10% in the last quarter of training.
    undertrained_eval_loss: float | None = Field(1.0, gt=0)
    # Throughput (``python -m benchmarks.train_throughput`` measures them; all off = what earlier versions did).
    # packing: short examples packed padding-free into rows of ``max_length`` tokens (TRL's best-fit-decreasing
    # packing); position ids restart at each example, and the attention mask transformers builds from them keeps
    # every example from attending to its neighbours (tests/test_train_speed.py checks the loss is unchanged).
    packing: bool = False
    # On an out-of-memory error, halve the batch and retry (transformers' ``auto_find_batch_size``; CUDA and
    # CPU allocator errors). The effective batch then shrinks with it.
    auto_find_batch_size: bool = False
    # Recompute activations in the backward pass: less memory, about a third more compute per step.
    gradient_checkpointing: bool = False
    # Liger's Triton kernels (GPU only; needs the liger-kernel package, not a dependency of slmops).
    use_liger_kernel: bool = False

    @field_validator("epochs", mode="before")
    @classmethod
    def _epochs_auto_or_positive(cls, value: Any) -> Any:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"Input should be a valid number or 'auto', got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"must be a number > 0 or 'auto', got {value!r}")
        return value

    @model_validator(mode="after")
    def _early_stopping_needs_eval(self) -> TrainingConfig:
        if self.early_stopping_patience is not None and self.eval_steps is None:
            raise ValueError("early_stopping_patience needs eval_steps (how often to evaluate)")
        return self

    @field_validator("use_liger_kernel")
    @classmethod
    def _liger_installed(cls, value: bool) -> bool:
        if value and importlib.util.find_spec("liger_kernel") is None:
            raise ValueError("needs the liger-kernel package (pip install liger-kernel; Triton kernels, GPU only)")
        return value


class LoraParams(PassThrough):
    """LoRA adapter settings. Any other key is passed to ``peft.LoraConfig`` as is (e.g. ``use_rslora``)."""

    TARGET: ClassVar[str] = "peft:LoraConfig"
    RESERVED: ClassVar[dict[str, str]] = {"lora_alpha": "alpha", "lora_dropout": "dropout", "task_type": SFT_MANAGED}
    r: int = 16
    alpha: int = 32  # peft's lora_alpha
    dropout: float = 0.05  # peft's lora_dropout
    target_modules: str | list[str] = "all-linear"
    # Train these whole (not as adapters), e.g. ["embed_tokens"] when the base's embeddings need to move (a
    # small or briefly pretrained base). Tied input/output embeddings stay tied.
    modules_to_save: list[str] | None = None


class QuantizationParams(PassThrough):
    """QLoRA's 4-bit base. Any other key is passed to ``transformers.BitsAndBytesConfig`` as is."""

    TARGET: ClassVar[str] = "transformers:BitsAndBytesConfig"
    RESERVED: ClassVar[dict[str, str]] = {"load_in_4bit": "finetune.method: qlora", "load_in_8bit": SFT_MANAGED}
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_use_double_quant: bool = True
    # auto: bfloat16 on a GPU that supports it, else float32
    bnb_4bit_compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


class DistillParams(Strict):
    """Logit distillation (``finetune.method: gkd`` or ``kd``): the student learns the token distributions of
    ``synthesize.teacher`` (a local transformers model sharing the student's tokenizer) through TRL's GKDTrainer."""

    adapter: Literal["lora", "qlora", "full"] = "lora"  # what trains on the student
    # gkd only (kd is forward KL on the data's answers: lmbda 0, beta 0, whatever is set here).
    lmbda: float = Field(0.5, ge=0.0, le=1.0)  # share of steps on the student's own sampled answers (on-policy)
    beta: float = Field(0.5, ge=0.0, le=1.0)  # generalized JSD: 0 = KL(teacher || student), 1 = the reverse KL
    temperature: float = Field(0.9, gt=0.0)  # sampling temperature of the on-policy answers
    max_new_tokens: int = Field(128, ge=1)  # longest on-policy answer


DISTILL_METHODS = ("gkd", "kd")


class FinetuneConfig(Strict):
    # auto: QLoRA where CUDA is available, else LoRA (bitsandbytes' 4-bit CPU kernels made a QLoRA step 46x slower
    # than LoRA at 0.5B shapes); the run prints and logs which and why. qlora, lora or full: used as set.
    # gkd / kd: logit distillation from the local teacher (``finetune.distill``), beside SFT on its answers.
    method: Literal["auto", "qlora", "lora", "full", "gkd", "kd"] = "auto"
    distill: DistillParams = DistillParams()
    # A hub id (downloads need project.offline: false) or a local folder relative to the work dir. The demo
    # points it at the tiny base model ``slmops demo build`` pretrains.
    base_model: str = "Qwen/Qwen2.5-0.5B-Instruct"
    lora: LoraParams = LoraParams()
    training: TrainingConfig = TrainingConfig()
    quantization: QuantizationParams = QuantizationParams()  # qlora only
    # Continue from the newest checkpoint under the output folder (written every ``training.save_steps``)
    # instead of starting over. Without a checkpoint there, training starts from the beginning.
    resume: bool = False
    # More than 1: train in this many processes under `accelerate launch` (gloo on CPU, NCCL on GPUs; one
    # process per GPU): DDP for qlora/lora, FSDP (sharded weights, gradients and optimizer state) for full.
    # ``training.batch_size`` is per process, so the global batch is processes x batch_size.
    # Rank 0 merges (or gathers) and saves. `slmops stage finetune --processes N` sets it for one run; `slmops run`
    # and the Prefect deployments go through the same finetune stage, so a profile's value holds there too.
    processes: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _distill_in_one_process(self) -> FinetuneConfig:
        if self.method in DISTILL_METHODS and self.processes > 1:
            raise ValueError(f"finetune.method {self.method} runs in one process: set finetune.processes: 1")
        return self


class TinyModelConfig(Strict):
    """A Llama-style decoder small enough to train on two CPU cores."""

    hidden_size: int = 128
    num_layers: int = 4
    # Multiples of 64 (bitsandbytes' 4-bit block size): its CPU inference path repacks weights per block.
    intermediate_size: int = 384
    num_heads: int = 4
    max_position_embeddings: int = 256


class DemoConfig(Strict):
    """The offline stand-ins ``slmops demo build`` makes: data from the task's generator, a tokenizer and a
    tiny student base model. Unused by ``slmops run`` itself, which reads ``data:`` and ``finetune.base_model``."""

    out_dir: str = "data/raw"  # where the generated seed / pool / test files go (point ``data:`` at them)
    n_seed: int = 500
    n_pool: int = 3000
    n_test: int = 300
    # Extra keyword arguments for the task's generator, e.g. {seed_phrasing_share: 0.5} (the inquiry generator:
    # the gold seed set uses that share of each category's phrasings, so the student starts from a narrower
    # slice of the world than the teacher knows).
    generator_options: dict[str, float | int | str | bool] = {}
    vocab_size: int = 2048
    student: TinyModelConfig = TinyModelConfig()
    pretrain: TrainingConfig = TrainingConfig(epochs=6, batch_size=16, learning_rate=3e-3, max_length=128)


class ActiveConfig(Strict):
    """Active distillation, after finetune (off at ``rounds: 0``). Each round the teacher writes fresh inputs
    (synthesize's self-instruct asks, sampled anew), the student answers them, and teacher label calls go first
    where the student's class differs from the one the input was written for, then where it is least certain
    (lowest mean probability of its label fields' tokens), until the round's share of ``budget`` is spent. The
    labelled rows join the training set and the student trains on, from its adapter. Every call is cached."""

    rounds: int = Field(0, ge=0)
    budget: int = Field(100, ge=0)  # teacher label calls over all rounds (cached answers count: reruns match)
    per_category: int = Field(10, ge=1)  # new inputs asked for per class and round
    # An answer that agrees with the class asked for at or above this certainty is never sent to the teacher.
    confident: float = Field(0.9, gt=0.0, le=1.0)
    epochs: float = Field(1.0, gt=0.0)  # each round's training over the grown set, from the round before
    max_new_tokens: int = Field(128, ge=1)  # the student's answers
