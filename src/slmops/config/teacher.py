"""The teacher (OpenAI-compatible, callable or local transformers), sampling, cost, and synthesis."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from slmops.config.base import Strict


class SamplingConfig(Strict):
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 96
    # Sent as OpenAI's per-request ``seed`` (vLLM and our server honour it): sampled answers reproduce.
    seed: int | None = None


class OpenAITeacherConfig(Strict):
    """Any OpenAI-compatible endpoint (vLLM, Ollama, Azure OpenAI, our own ``slmops serve``)."""

    kind: Literal["openai"] = "openai"
    # A local engine on its own port (llama.cpp's default): never slmops serve's 8000 nor the loop demo's 8765.
    base_url: str = "http://127.0.0.1:8080/v1"
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
    # Contrast rows: this many training inputs, each rewritten by the teacher as little as it can so that its
    # class becomes another (the task's contrast_prompt; slmops.synthesize.contrast). 0: none.
    contrast_rows: int = Field(0, ge=0)
    max_reject_rate: float = Field(0.3, ge=0.0, le=1.0)
    # MinHash-estimated Jaccard of character 3-grams at or above which two inputs are near-duplicates:
    # used to drop duplicate synthetic inputs and to decontaminate every training row against the test set.
    near_dup_threshold: float = Field(0.8, gt=0.0, le=1.0)
    # No category may exceed this share of the training file: over-represented teacher rows are dropped
    # (gold rows never are). A category under ``min_class_share`` is reported as a warning.
    max_class_share: float = Field(0.4, gt=0.0, le=1.0)
    min_class_share: float = Field(0.02, ge=0.0, lt=1.0)
    # Self-instruct asks are spread over the attribute grid (the task's synthesis_attributes, else register,
    # length, channel, noise); each prompt names its cell and each row records it in provenance.
    attributes: bool = True
    # Novelty: a new input whose TF-IDF (character 1-3 gram) cosine to any training or test input is at or
    # above this is rejected as not_novel (None: off). Stricter than near_dup_threshold's MinHash Jaccard.
    novelty_max_similarity: float | None = Field(0.9, gt=0.0, le=1.0)
    # Agreement: the teacher labels each new input again, blind; another class than the one asked for is
    # rejected as label_mismatch. Off: the row is kept under the class the teacher gave it.
    agreement: bool = True
    # Coverage (a diversity figure): the share of test inputs whose nearest new input has at least this cosine.
    coverage_similarity: float = Field(0.5, gt=0.0, le=1.0)
    cost: CostConfig = CostConfig()
