"""The project, its data files, the prepare stage and PII masking."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from slmops.config.base import Strict


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
