"""What is exported (ONNX forms), how it is evaluated, and how it is served."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from slmops.config.base import Strict
from slmops.config.teacher import TeacherConfig

WeightType = Literal["int8", "uint8", "int8_block", "int4", "genai_int4"]


class QuantizeConfig(Strict):
    # int8/uint8: ONNX Runtime dynamic quantization (weights 8-bit, activations on the fly).
    # int4: ONNX Runtime's MatMulNBits (weight-only, blockwise); the int4_ settings below apply to it.
    # int8_block: the same MatMulNBits at 8 bits (round-to-nearest, int4_block_size, int4_accuracy_level,
    # int4_embeddings): twice int4's size, closer to fp32. At Qwen2.5-0.5B shapes on 2 cores one decode step of
    # 1 row took 27 ms against 99 ms for dynamic int8 (``python -m benchmarks.decode_step``), whose per-step
    # activation quantization and MatMulInteger cost more than the smaller weights save.
    # genai_int4: ONNX Runtime GenAI's model builder from the merged model (its own int4 graph, KV cache and
    # genai_config.json), served through GenAI's C++ decode loop; its block size is int4_block_size.
    weight_type: WeightType = "int8"
    # int8/uint8: one scale per output column of each weight (per-channel) rather than one per tensor. Measured on
    # the review_insights smoke model: 19 of 20 greedy answers identical to ONNX fp32, against 18 per tensor.
    int8_per_channel: bool = True
    # Several: each is written to its own folder (``<out>/<type>/``) so the flow can evaluate all of them
    # and register the smallest that passes the gates. None: just ``weight_type``.
    candidates: list[WeightType] | None = None
    int4_block_size: int = Field(32, ge=16)  # a power of two: 16, 32, 64, 128, 256
    int4_symmetric: bool = True
    # rtn: round-to-nearest (default); hqq: half-quadratic; k_quant: llama.cpp's k-quant scale search (MatMuls
    # only, asymmetric). None needs calibration data.
    int4_algorithm: Literal["rtn", "hqq", "k_quant"] = "rtn"
    # MatMulNBits' compute precision (rtn, hqq): 4 (the default, as ONNX Runtime GenAI's builder sets for CPU):
    # activations quantized to int8 per block, int8 dot products; None or 0: fp32. At Qwen2.5-0.5B shapes on 2
    # cores, one decode step of 1 row took 16-18 ms at level 4 against 27-29 ms in fp32, of 8 rows 41 against
    # 92 ms (``python -m benchmarks.decode_step``; the README's serving section).
    int4_accuracy_level: Literal[0, 1, 2, 3, 4] | None = 4
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


class EngineConfig(Strict):
    """An OpenAI-compatible engine (llama.cpp's server, vLLM, ...) that generates behind the slmops front: the
    front keeps auth, limits, PII masking, the inference log, the teacher fallback and metrics."""

    kind: Literal["openai"] = "openai"
    base_url: str  # the engine's OpenAI root, e.g. http://127.0.0.1:8080/v1
    model: str | None = None  # the engine's name for the base model; None: the first one its /models lists
    api_key_env: str | None = None  # the environment variable holding the engine's key (none sent when unset)
    # The engine's context window, when the front should know it (budgets default to what it leaves); None:
    # the engine alone refuses a prompt that does not fit (its 4xx is passed on).
    context_window: int | None = Field(None, ge=1)
    connect_timeout_s: float = Field(10.0, gt=0)


class ServeConfig(Strict):
    host: str = "127.0.0.1"
    port: int = 8000
    max_tokens_cap: int = Field(256, ge=1)  # requests asking for more get 400, not a silent cut
    max_body_bytes: int = Field(65_536, ge=1024)  # larger request bodies get 413
    # Requests queued or generating at once; one more gets 429 with Retry-After instead of waiting forever.
    max_in_flight: int = Field(8, ge=1)
    generation_timeout_s: float = Field(30.0, gt=0)  # a slower generation is stopped and answered 504
    # Requests generated together, up to this many (1: off). ``continuous``: a request joins the running batch
    # at the next decode step (serve/continuous.py); ``dynamic``: greedy requests that queued while the model
    # was busy share the next ``generate`` call (serve/batcher.py). The GenAI form is always dynamic.
    max_batch_size: int = Field(8, ge=1)
    batching: Literal["continuous", "dynamic"] = "continuous"
    # Each inference-log row is fsync'ed before the answer is sent: a crash loses no answered request.
    log_fsync: bool = True
    # Serving a registry alias: check every this many seconds whether another version holds it now, and
    # switch to it once fully loaded and verified (POST /admin/reload does the same at once). None: never poll.
    reload_interval_s: float | None = Field(30.0, gt=0)
    # The model sees user messages as the prepare stage wrote its training inputs: NFKC and PII masked (the
    # fast masker). Off: the raw text, which the student never saw in training (a train/serve skew).
    mask_inputs: bool = True
    fallback: FallbackConfig = FallbackConfig()
    # None: our own in-process forms generate. Set: an OpenAI-compatible engine does, over HTTP.
    engine: EngineConfig | None = None
    # Multi-LoRA, vLLM's ``--lora-modules name=path``: each adapter served as its own model name over one base.
    # Our torch form loads the base once and each adapter with peft; with an engine, the name is passed
    # through as the engine's model (the engine was started with the adapter; the path is the engine's).
    lora_modules: dict[str, str] = {}
