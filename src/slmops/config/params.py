"""Typed params for every stage, loaded from ``params/base.yaml`` plus a profile overlay.

Usage:
    python -c "from slmops.config import load_params; print(load_params('smoke').model_dump_json(indent=2))"

A mistyped or unknown key fails at load time with the key's dotted path and the file it came from.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slmops.config.project import PROJECT_FILE, find_project
from slmops.tasks import spec_path


class Strict(BaseModel):
    # strict: "3" for an int is an error, not a silent 3. Params are validated in JSON mode (``_validate``), where
    # strings still become paths and lists tuples, as YAML cannot say otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ---------------------------------------------------------------- project and demo


class ProjectConfig(Strict):
    name: str = "slmops"
    registered_model: str | None = None  # None: "<task name>-slm", e.g. ticket-triage-slm
    experiment: str = "slmops"
    seed: int = 42
    # Offline: no model or data download at run time (HF_HUB_OFFLINE and friends), and a hub id where a local
    # folder is needed fails before any stage starts. The demo and smoke profiles turn it on.
    offline: bool = False


class SourceConfig(Strict):
    """One data file: JSONL, CSV or Parquet, with an optional mapping of spec names to the file's columns."""

    path: str  # relative to the work dir
    format: Literal["auto", "jsonl", "csv", "parquet"] = "auto"  # auto: from the suffix
    # spec name -> column in the file, e.g. {input: body, category: label}. Unmapped names are looked up as
    # themselves; JSONL rows may also nest the labels under "expected".
    columns: dict[str, str] = {}


class DataConfig(Strict):
    """The user's data. ``labelled`` is required; without ``test``, a test set is split off ``labelled``."""

    labelled: SourceConfig | None = None
    unlabelled: SourceConfig | None = None  # inputs only: the teacher labels them
    test: SourceConfig | None = None
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)  # used only when ``test`` is not given

    def sources(self) -> dict[str, SourceConfig]:
        return {
            k: v for k, v in (("labelled", self.labelled), ("unlabelled", self.unlabelled), ("test", self.test)) if v
        }


class TinyModelConfig(Strict):
    """A Llama-style decoder small enough to train on two CPU cores."""

    hidden_size: int = 128
    num_layers: int = 4
    # Multiples of 64 (bitsandbytes' 4-bit block size): its CPU inference path repacks weights per block.
    intermediate_size: int = 384
    num_heads: int = 4
    max_position_embeddings: int = 256


def library_fields(target: str) -> set[str]:
    """The keyword names a library config class accepts, ``"module:Class"`` (dataclass fields or __init__)."""
    import dataclasses
    import importlib
    import inspect

    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    fields = {f.name for f in dataclasses.fields(cls) if f.init} if dataclasses.is_dataclass(cls) else set()
    params = inspect.signature(cls.__init__).parameters.values()
    return fields | {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}


class PassThrough(BaseModel):
    """Declared fields (ours, with our defaults) plus any other key of the library class in ``TARGET``.

    An extra key is checked against that class's fields when params load (the library is imported only if
    there are extra keys), so a typo still fails at load naming the key. ``RESERVED`` maps library keys that
    must not be set directly to the field that sets them.
    """

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    TARGET: ClassVar[str]
    RESERVED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="after")
    def _known_extras(self) -> PassThrough:
        extra = self.model_extra or {}
        for key in extra:
            if key in self.RESERVED:
                raise ValueError(f"{key}: set {self.RESERVED[key]} instead")
        unknown = sorted(set(extra) - library_fields(self.TARGET)) if extra else []
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}: not a field of {self.TARGET.replace(':', '.')}")
        return self

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


_SFT_MANAGED = "set by slmops (from the declared fields or the stage)"


class TrainingConfig(PassThrough):
    """Training hyper-parameters. Any other key is passed to ``trl.SFTConfig`` as is."""

    TARGET: ClassVar[str] = "trl:SFTConfig"
    RESERVED: ClassVar[dict[str, str]] = {
        "num_train_epochs": "epochs",
        "per_device_train_batch_size": "batch_size",
        "per_device_eval_batch_size": "batch_size",
        "output_dir": _SFT_MANAGED,
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


# ---------------------------------------------------------------- pipeline stages


class PrepareConfig(Strict):
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    min_chars: int = 5
    max_chars: int = 2000
    mask_pii: bool = True


PIILabel = Literal[
    "NAME", "ADDRESS", "PHONE", "EMAIL", "CARD", "MYNUMBER", "POSTAL", "BANK_ACCOUNT", "PASSPORT", "DRIVER_LICENSE"
]


class PIIConfig(Strict):
    """What ``slmops.text.pii`` masks, on every path (prepare, teacher prompts and replies, the inference log, the
    server's fallback, ``slmops pii``). Strict by default: every entity type, threshold 0.5."""

    entities: list[PIILabel] = Field(default_factory=lambda: list(PIILabel.__args__), min_length=1)
    # Findings scored under this are kept in the text. Validated formats score 0.75-0.95, a format whose shape
    # alone is ambiguous (7 digits, 2 letters + 7 digits) 0-0.4 until a context word (口座, 旅券 …) lifts it.
    score_threshold: float = Field(0.5, ge=0.0, le=1.0)
    # GiNZA's statistical NER model on top of the dictionary (Sudachi) names and the address grammar. Measured on
    # benchmarks/data (benchmarks/pii.py): +1 name of 57 on one set, +0 on the other, at ~30x the cost (~55 ms
    # instead of ~2 ms per 200 characters, 19 instead of ~700 rows/s), so off by default. The server's
    # synchronous log row never uses it (latency budget); prepare, the teacher and `slmops pii` do when it is on.
    ner: bool = False
    allow_list: list[str] = []  # exact strings never masked (a company's own name that looks like a person's)


class SamplingConfig(Strict):
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 96
    # Sent as OpenAI's per-request ``seed`` (vLLM and our server honour it): sampled answers reproduce.
    seed: int | None = None


class OpenAITeacherConfig(Strict):
    """Any OpenAI-compatible endpoint (vLLM, Ollama, Azure OpenAI, our own ``slmops serve``)."""

    kind: Literal["openai"] = "openai"
    base_url: str = "http://127.0.0.1:8765/v1"
    model: str = "teacher"
    api_key_env: str | None = "SLMOPS_TEACHER_API_KEY"  # the env var's name, never the key itself
    timeout_s: float = Field(60.0, gt=0)
    max_concurrency: int = Field(4, ge=1)  # requests in flight at once
    max_retries: int = Field(4, ge=0)  # per request, on 429 / 5xx / timeouts / connection errors
    max_requests_per_minute: float | None = Field(None, gt=0)  # None: no client-side limit
    max_tokens_per_minute: float | None = Field(None, gt=0)  # prompt estimate + max_tokens, per request
    # Stop the stage when this many attempts in a row failed (endpoint down), instead of burning the queue.
    circuit_breaker_failures: int = Field(20, ge=1)


class CallableTeacherConfig(Strict):
    """An existing system (rules engine, internal API) exposed as ``module:function(messages) -> str``."""

    kind: Literal["callable"] = "callable"
    target: str
    model: str = "callable"


class TransformersTeacherConfig(Strict):
    """A local transformers model folder (or a hub id, if the user's machine may download it)."""

    kind: Literal["transformers"] = "transformers"
    model: str
    batch_size: int = Field(8, ge=1)  # prompts generated together (left-padded)


TeacherConfig = Annotated[
    OpenAITeacherConfig | CallableTeacherConfig | TransformersTeacherConfig, Field(discriminator="kind")
]


class CostConfig(Strict):
    """Teacher price, for the estimated cost logged to MLflow (0 for a self-hosted teacher)."""

    prompt_per_1k_tokens: float = Field(0.0, ge=0.0)
    completion_per_1k_tokens: float = Field(0.0, ge=0.0)
    currency: str = "USD"


class SynthesizeConfig(Strict):
    teacher: TeacherConfig = OpenAITeacherConfig()
    sampling: SamplingConfig = SamplingConfig()
    augment_sampling: SamplingConfig = SamplingConfig(temperature=0.9, top_p=0.95, seed=42)  # seeded: reruns reproduce
    max_unlabelled: int | None = None  # label at most this many pool prompts (None: all)
    augment_per_category: int = 10  # self-instruct: new inputs the teacher writes per category
    max_reject_rate: float = Field(0.3, ge=0.0, le=1.0)
    # MinHash-estimated Jaccard of character 3-grams at or above which two inputs are near-duplicates:
    # used to drop duplicate synthetic inputs and to decontaminate every training row against the test set.
    near_dup_threshold: float = Field(0.8, gt=0.0, le=1.0)
    # No category may exceed this share of the training file: over-represented teacher rows are dropped
    # (gold rows never are). A category under ``min_class_share`` is reported as a warning.
    max_class_share: float = Field(0.4, gt=0.0, le=1.0)
    min_class_share: float = Field(0.02, ge=0.0, lt=1.0)
    cost: CostConfig = CostConfig()


class LoraParams(PassThrough):
    """LoRA adapter settings. Any other key is passed to ``peft.LoraConfig`` as is (e.g. ``use_rslora``)."""

    TARGET: ClassVar[str] = "peft:LoraConfig"
    RESERVED: ClassVar[dict[str, str]] = {"lora_alpha": "alpha", "lora_dropout": "dropout", "task_type": _SFT_MANAGED}
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
    RESERVED: ClassVar[dict[str, str]] = {"load_in_4bit": "finetune.method: qlora", "load_in_8bit": _SFT_MANAGED}
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_use_double_quant: bool = True
    # auto: bfloat16 on a GPU that supports it, else float32
    bnb_4bit_compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


class FinetuneConfig(Strict):
    method: Literal["qlora", "lora", "full"] = "qlora"
    # A hub id (downloads need project.offline: false) or a local folder relative to the work dir. The demo
    # points it at the tiny base model ``slmops demo build`` pretrains.
    base_model: str = "Qwen/Qwen2.5-0.5B-Instruct"
    lora: LoraParams = LoraParams()
    training: TrainingConfig = TrainingConfig()
    quantization: QuantizationParams = QuantizationParams()  # qlora only
    # Continue from the newest checkpoint under the output folder (written every ``training.save_steps``)
    # instead of starting over. Without a checkpoint there, training starts from the beginning.
    resume: bool = False


WeightType = Literal["int8", "uint8", "int4"]


class QuantizeConfig(Strict):
    # int8/uint8: ONNX Runtime dynamic quantization (weights 8-bit, activations on the fly).
    # int4: ONNX Runtime's MatMulNBits (weight-only, blockwise); the settings below apply to it.
    weight_type: WeightType = "int8"
    # Several: each is written to its own folder (``<out>/<type>/``) so the flow can evaluate all of them
    # and register the smallest that passes the gates. None: just ``weight_type``.
    candidates: list[WeightType] | None = None
    int4_block_size: int = Field(32, ge=16)  # a power of two: 16, 32, 64, 128, 256
    int4_symmetric: bool = True
    # rtn: round-to-nearest (default); hqq: half-quadratic; k_quant: llama.cpp's k-quant scale search (MatMuls
    # only, asymmetric). None needs calibration data.
    int4_algorithm: Literal["rtn", "hqq", "k_quant"] = "rtn"
    # MatMulNBits' compute precision for rtn: None (the default, fp32), 4 (int8 compute: faster on CPU).
    int4_accuracy_level: Literal[0, 1, 2, 3, 4] | None = None
    # rtn: quantize the input embedding (Gather) to 4 bits as well; without it, a large-vocabulary model's
    # fp32 embedding alone can make int4 bigger than int8. A tied embedding shares the LM head's 4-bit table.
    int4_embeddings: bool = True
    # Keep these MatMul nodes (by node name) in full precision, e.g. the LM head when int4 hurts it most.
    int4_nodes_to_exclude: list[str] = []

    @model_validator(mode="after")
    def _check(self) -> QuantizeConfig:
        if self.int4_block_size & (self.int4_block_size - 1):
            raise ValueError(f"int4_block_size {self.int4_block_size} is not a power of two")
        if self.candidates and self.weight_type not in self.candidates:  # the fallback when none passes
            raise ValueError(f"weight_type {self.weight_type!r} is not among candidates {self.candidates}")
        return self

    @property
    def forms(self) -> list[str]:
        return list(dict.fromkeys(self.candidates or [self.weight_type]))


class EvaluateConfig(Strict):
    max_new_tokens: int = 96
    max_examples: int | None = None
    evaluate_teacher: bool = True


class FallbackConfig(Strict):
    """SLM first, teacher as backstop: the student answers; an answer that fails the task schema (or whose
    confidence is under ``min_confidence``) is replaced by the teacher's. Off while ``teacher`` is unset."""

    teacher: TeacherConfig | None = None
    on_invalid_output: bool = True  # the student's answer does not parse as the task's JSON schema
    # The student's least certain token (``min_token``) or the geometric mean over its tokens (``mean_token``)
    # under this probability sends the request to the teacher. None: confidence is not checked.
    min_confidence: float | None = Field(None, gt=0.0, le=1.0)
    confidence: Literal["min_token", "mean_token"] = "min_token"
    max_tokens: int = Field(128, ge=1)  # the teacher's answer budget when the client set no max_tokens


class ServeConfig(Strict):
    host: str = "127.0.0.1"
    port: int = 8000
    max_tokens_cap: int = Field(256, ge=1)  # requests asking for more get 400, not a silent cut
    max_body_bytes: int = Field(65_536, ge=1024)  # larger request bodies get 413
    # Requests queued or generating at once; one more gets 429 with Retry-After instead of waiting forever.
    max_in_flight: int = Field(8, ge=1)
    generation_timeout_s: float = Field(30.0, gt=0)  # a slower generation is stopped and answered 504
    # Greedy requests waiting while the model is busy are generated together, up to this many (1: off).
    max_batch_size: int = Field(8, ge=1)
    # Each inference-log row is fsync'ed before the answer is sent: a crash loses no answered request.
    log_fsync: bool = True
    # Serving a registry alias: check every this many seconds whether another version holds it now, and
    # switch to it once fully loaded and verified (POST /admin/reload does the same at once). None: never poll.
    reload_interval_s: float | None = Field(30.0, gt=0)
    # The model sees user messages as the prepare stage wrote its training inputs: NFKC and PII masked (the
    # fast masker). Off: the raw text, which the student never saw in training (a train/serve skew).
    mask_inputs: bool = True
    fallback: FallbackConfig = FallbackConfig()


class MonitorConfig(Strict):
    window: int = 200  # most recent inference-log rows compared with the reference
    min_rows: int = 30
    drift_share: float = Field(0.5, gt=0.0, le=1.0)  # share of drifted tabular columns that counts as drift
    retrain_on_drift: bool = True
    # Semantic drift: how far each input is from its nearest reference input (cosine over character n-gram
    # TF-IDF), current window vs a held-out slice of the reference, one-sided Mann-Whitney. Drift needs both
    # the p-value under ``semantic_p_value`` and the effect (P(current row more novel than a reference row))
    # at or over ``semantic_min_effect``, so a large window does not flag a negligible shift.
    semantic: bool = True
    semantic_p_value: float = Field(0.001, gt=0.0, lt=1.0)
    semantic_min_effect: float = Field(0.6, ge=0.5, lt=1.0)
    semantic_max_reference: int = Field(3000, ge=50)  # reference rows used (a seeded sample of larger files)
    # Predicted-label distribution of every enum field vs the reference labels: drift when the chi-square
    # p-value is under ``label_p_value`` and the total-variation distance reaches ``label_min_distance``.
    label_p_value: float = Field(0.001, gt=0.0, lt=1.0)
    label_min_distance: float = Field(0.1, gt=0.0, le=1.0)
    # Rates of the window (absolute ceilings: the reference has no served answers to compare with).
    max_fallback_rate: float = Field(0.2, ge=0.0, le=1.0)  # answers the teacher gave instead of the student
    max_invalid_rate: float = Field(0.1, ge=0.0, le=1.0)  # answers that fail the task's schema
    low_confidence: float = Field(0.5, gt=0.0, le=1.0)  # a row whose least certain token is under this ...
    max_low_confidence_rate: float = Field(0.3, ge=0.0, le=1.0)  # ... counts; this share of them is drift


class HarvestConfig(Strict):
    """Answered traffic -> training candidates (``src/slmops/loop/harvest.py``)."""

    max_rows_per_batch: int = Field(500, ge=1)  # the most useful rows first (see ``priority``)
    near_dup_threshold: float = Field(0.8, gt=0.0, le=1.0)  # as synthesize's: among rows, vs train, vs eval
    low_confidence: float = Field(0.5, gt=0.0, le=1.0)  # least certain token under this: "low_confidence"
    # A row whose nearest training input is less similar than this (cosine, char n-gram TF-IDF) lies in a
    # region the training data does not cover: "drifted_region".
    novelty_similarity: float = Field(0.3, gt=0.0, le=1.0)
    include_unflagged: bool = True  # fill the batch with ordinary traffic once the flagged rows are in
    min_chars: int = Field(5, ge=1)


class TriggerConfig(Strict):
    """When drift starts a retrain (``src/slmops/loop/trigger.py``)."""

    consecutive_windows: int = Field(3, ge=1)  # drift in this many windows in a row (each window counted once)
    cooldown_hours: float = Field(24.0, ge=0.0)  # since the last retrain started
    min_new_rows: int = Field(100, ge=0)  # harvestable rows logged since the last harvest


class CompareConfig(Strict):
    """Champion vs challenger on the same rows (``src/slmops/loop/compare.py``)."""

    field: str | None = None  # the enum field judged per example; None: the task's stratify_by field
    test: Literal["mcnemar", "bootstrap", "both"] = "mcnemar"
    significance_on: Literal["recent", "gold", "pooled"] = "recent"  # the rows the paired test runs on
    alpha: float = Field(0.05, gt=0.0, lt=1.0)  # one-sided: the challenger is better
    min_samples: int = Field(50, ge=1)  # rows the paired test needs before it may pass
    max_gold_regression: float = Field(0.01, ge=0.0, le=1.0)  # accuracy the challenger may lose on gold
    bootstrap_samples: int = Field(2000, ge=100)
    seed: int = 0


class LoopDemoConfig(Strict):
    """``slmops loop demo``: traffic from the task's demo generator sent through a real server."""

    control_windows: int = Field(1, ge=0)  # monitor windows of in-distribution traffic first (the control)
    max_shift_windows: int = Field(4, ge=1)  # windows of shifted traffic sent until a retrain starts
    eval_rows: int = Field(200, ge=10)  # a held-out shifted slice, never sent: measured before and after
    dev_set: str | None = None  # a hand-written labelled file (work-dir relative), measured, never sent
    port: int = Field(8765, ge=1, le=65535)
    concurrency: int = Field(4, ge=1)  # requests in flight from the demo's client


class LoopConfig(Strict):
    """The continuous-improvement loop: trigger, recent-traffic eval split, champion vs challenger."""

    trigger: TriggerConfig = TriggerConfig()
    compare: CompareConfig = CompareConfig()
    demo: LoopDemoConfig = LoopDemoConfig()
    # The most recent labelled harvest held out as the recent-traffic eval set (never trained on): the newest
    # ``recent_eval_rows`` rows if set, else the newest ``recent_eval_fraction`` of them.
    recent_eval_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    recent_eval_rows: int | None = Field(None, ge=1)
    init_from: Literal["base", "champion"] = "base"  # a retrain starts from the base model or the champion
    traffic_repeat: int = Field(3, ge=1)  # each labelled traffic row is trained on this many times per epoch
    auto_promote_to: Literal["poc", "pilot", "prod"] = "poc"  # how far a winning challenger moves by itself


class DvcConfig(Strict):
    commit: bool = False  # after a run, record outputs in dvc.lock and push them to the DVC remote


class Params(Strict):
    project: ProjectConfig = ProjectConfig()
    # A spec name (tasks/<name>.yaml in the project), a spec path relative to the project, or ``module:Class``.
    task: str = ""  # required: load_params refuses a project that names none
    data: DataConfig = DataConfig()
    # Promotion thresholds: None means the gates beside the task spec (tasks/<name>.gates.yaml); else a file
    # relative to the project.
    gates: str | None = None
    demo: DemoConfig = DemoConfig()
    prepare: PrepareConfig = PrepareConfig()
    synthesize: SynthesizeConfig = SynthesizeConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    quantize: QuantizeConfig = QuantizeConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    serve: ServeConfig = ServeConfig()
    monitor: MonitorConfig = MonitorConfig()
    harvest: HarvestConfig = HarvestConfig()
    loop: LoopConfig = LoopConfig()
    dvc: DvcConfig = DvcConfig()
    pii: PIIConfig = PIIConfig()

    @property
    def model_name(self) -> str:
        """The registered model's name: ``project.registered_model``, else derived from the task."""
        if self.project.registered_model:
            return self.project.registered_model
        stem = self.task.rsplit(":", 1)[-1].rsplit("/", 1)[-1].removesuffix(".yaml").removesuffix(".yml")
        return stem.lower().replace("_", "-") + "-slm"


class GateThresholds(Strict):
    """Thresholds on evaluation metrics, by metric name (``json_valid_rate``, ``category_accuracy``,
    ``latency_p95_ms``, ``size_mb``, ...: whatever the task and evaluation report). A gate on a metric the
    candidate does not report fails, so a typo cannot pass silently."""

    min: dict[str, float] = {}
    max: dict[str, float] = {}
    # Champion vs challenger: the candidate may trail the current holder by at most this much, per metric.
    max_regression_vs_champion: dict[str, float] = {}


class ParityThresholds(Strict):
    """What was trained is what is served: per step of trained -> merged -> ONNX fp32 -> quantized -> served,
    against the step before it (``src/slmops/evaluate/parity.py``). Failing blocks registration."""

    min_output_agreement: float = Field(0.9, ge=0.0, le=1.0)  # share of identical greedy answers
    min_label_agreement: float = Field(0.95, ge=0.0, le=1.0)  # share with the same parsed label
    max_prefill_logit_diff: float | None = Field(1e-2, gt=0.0)  # fp32 pairs only; None: not checked


class Gates(Strict):
    """Each stage at least as strict as the one before it: a model that passes prod passes pilot and poc."""

    poc: GateThresholds
    pilot: GateThresholds
    prod: GateThresholds
    parity: ParityThresholds = ParityThresholds()  # checked before any version is registered

    @model_validator(mode="after")
    def _stricter_each_stage(self) -> Gates:
        stages = [("poc", self.poc), ("pilot", self.pilot), ("prod", self.prod)]
        for (before, looser), (stage, stricter) in itertools.pairwise(stages):
            for metric, low in looser.min.items():
                high = stricter.min.get(metric)
                if high is None or high < low:
                    raise ValueError(f"{stage}.min.{metric} {high} is looser than {before}'s {low}")
            for metric, low in looser.max.items():
                high = stricter.max.get(metric)
                if high is None or high > low:
                    raise ValueError(f"{stage}.max.{metric} {high} is looser than {before}'s {low}")
        return self


# ---------------------------------------------------------------- loading


class ParamsError(ValueError):
    """A params file is malformed; the message names the file and the key."""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and "kind" not in value:
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _has_path(data: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _explain(err: ValidationError, sources: list[tuple[Path, dict[str, Any]]]) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p in {"openai", "callable", "transformers"}))
        where = next((str(p) for p, d in reversed(sources) if _has_path(d, loc)), str(sources[-1][0]))
        message = e["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {'.'.join(map(str, loc))}: {message}" if loc else f"{where}: {message}")
    return "invalid params:\n  " + "\n  ".join(lines)


def _validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Strict validation in JSON mode: YAML's strings, numbers and lists, no silent coercion of "3" to 3."""
    return model.model_validate_json(json.dumps(data, default=str))


def _profile_sources(params_dir: Path, profile: str, seen: tuple[str, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """``profiles/<profile>.yaml`` and, first, the profiles it ``extends`` (e.g. ``extends: demo``)."""
    path = params_dir / f"{profile}.yaml"
    if not path.exists():
        raise ParamsError(f"unknown profile {profile!r}: {path} does not exist")
    if profile in seen:
        raise ParamsError(f"{path}: 'extends' loops back to {profile!r}")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    return (_profile_sources(params_dir, parent, (*seen, profile)) if parent else []) + [(path, data)]


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["finetune.training.epochs=2", "task=review_insights"]`` -> a nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ParamsError(f"--set {pair!r}: expected dotted.key=value")
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return out


def resolve_profile(profile: str | None, root: Path) -> str | None:
    """The profile a command runs: ``--profile``, else ``SLMOPS_PROFILE``, else the project's ``default_profile``."""
    if profile:
        return profile
    if os.environ.get("SLMOPS_PROFILE"):
        return os.environ["SLMOPS_PROFILE"]
    return _read_yaml(root / PROJECT_FILE).get("default_profile")


def load_params(
    profile: str | None = None, project: Path | None = None, extra: Path | None = None, overrides: list[str] = ()
) -> Params:
    """Code defaults, overlaid by the project's ``slmops.yaml``, ``profiles/<profile>.yaml`` (and what it
    extends), an extra file and ``--set key=value`` overrides, in that order. ``project``: the project root
    (default: found by walking up from the working directory)."""
    root = Path(project).resolve() if project is not None else find_project()
    if not (root / PROJECT_FILE).is_file():
        raise ParamsError(f"{root}: no {PROJECT_FILE}: not an slmops project (create one with `slmops init`)")
    profile = resolve_profile(profile, root)
    base = _read_yaml(root / PROJECT_FILE)
    base.pop("default_profile", None)
    sources = [(root / PROJECT_FILE, base)]
    sources += _profile_sources(root / "profiles", profile) if profile else []
    if extra is not None:
        sources.append((extra, _read_yaml(extra)))
    if overrides:
        sources.append((Path("--set"), parse_overrides(list(overrides))))
    # Overlays apply to the code's defaults, so a partial section (``augment_sampling: {max_tokens: 48}``) keeps
    # the other defaults of that section, including those a parent sets for it (seed 42, temperature 0.9).
    merged: dict[str, Any] = Params().model_dump(mode="json")
    for _, data in sources:
        merged = deep_merge(merged, data)
    try:
        params = _validate(Params, merged)
    except ValidationError as err:
        raise ParamsError(_explain(err, sources)) from None
    if not params.task:
        raise ParamsError(f"{root / PROJECT_FILE}: task: not set: name your task spec (tasks/<name>.yaml)")
    return params


def load_params_file(path: Path) -> Params:
    """A complete params file, e.g. the resolved one ``slmops dvc`` writes for DVC (its ``code:`` section, the
    stages' code hashes, is DVC's alone)."""
    data = _read_yaml(path)
    data.pop("code", None)
    try:
        return _validate(Params, data)
    except ValidationError as err:
        raise ParamsError(_explain(err, [(path, data)])) from None


def gates_file(params: Params, root: Path) -> Path:
    """The task's gates: ``params.gates`` (relative to the project) or ``<task spec>.gates.yaml`` beside it."""
    if params.gates:
        return root / params.gates
    spec = spec_path(params.task, root)
    if spec is None:
        raise ParamsError(f"task {params.task!r} is a class, not a spec file: set `gates:` to its gates file")
    return spec.with_name(spec.name.removesuffix(spec.suffix) + ".gates.yaml")


def load_gates(path: Path) -> Gates:
    if not path.is_file():
        raise ParamsError(f"{path}: no gates file (each task's gates sit beside its spec: tasks/<name>.gates.yaml)")
    data = _read_yaml(path)
    try:
        return _validate(Gates, data)
    except ValidationError as err:
        raise ParamsError(_explain(err, [(path, data)])) from None


# ---------------------------------------------------------------- where things live


class Layout(BaseModel):
    """Every path the pipeline reads or writes, below the project's root."""

    model_config = ConfigDict(frozen=True)
    root: Path

    def _p(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    prepared = property(lambda self: self._p("data", "prepared"))
    synthetic = property(lambda self: self._p("data", "synthetic"))
    tokenizer = property(lambda self: self._p("models", "tokenizer"))
    student_base = property(lambda self: self._p("models", "student_base"))
    student = property(lambda self: self._p("models", "student"))
    student_onnx = property(lambda self: self._p("models", "student_onnx"))
    reports = property(lambda self: self._p("reports"))
    inference_log = property(lambda self: self._p("logs", "inference.jsonl"))
    state = property(lambda self: self._p(".slmops"))
    console_log = property(lambda self: self._p("logs", "slmops.log"))
    traffic = property(lambda self: self._p("data", "traffic"))  # harvested traffic, append-only batches
    traffic_labelled = property(lambda self: self._p("data", "traffic_labelled"))  # train.jsonl + recent.jsonl
    champion = property(lambda self: self._p("models", "champion"))  # merged weights of the last poc holder
    teacher_cache = property(lambda self: self._p(".slmops", "teacher_cache.sqlite"))


def resolve_model_path(name_or_path: str, root: Path) -> str:
    """A relative path that exists under ``root`` wins; anything else is treated as a hub id."""
    candidate = root / name_or_path
    return str(candidate) if candidate.exists() else name_or_path
