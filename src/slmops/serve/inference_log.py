"""The inference log: append-only JSONL, one row per chat completion that was generated.

Usage:
    log = InferenceLog(Path("logs/inference.jsonl"))
    log.append(log_row(request_id, "tiny", messages, completion, latency_s=0.03, model_version="3"))

Row fields: id, ts (UTC ISO), model, model_version, status (200, or 504 for a generation stopped by the
timeout), stream (bool), served_by ("student" | "teacher"), fallback (null | "invalid_output" |
"low_confidence"), input (the last user message, PII-masked), output (the answer sent, PII-masked),
latency_ms, prompt_tokens, completion_tokens, finish_reason ("stop" | "length"). ``slmops monitor`` reads
the rows with status 200.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from slmops.config import PIIConfig
from slmops.inference.chat_model import Completion
from slmops.text import pii


class InferenceLog:
    """Rows are written whole under a lock (never interleaved) and, with ``fsync``, are on disk before
    ``append`` returns, so an answer the client received is never missing after a crash. The file is opened
    per row, so it can be rotated (moved away) while the server runs."""

    def __init__(self, path: Path, fsync: bool = True, pii_cfg: PIIConfig | None = None):
        self.path, self.fsync = path, fsync
        self.pii_cfg = pii_cfg  # params.pii: what ``log_row`` masks
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, row: dict) -> None:
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())


def log_row(
    request_id: str,
    model_name: str,
    messages: list[dict],
    completion: Completion,
    latency_s: float,
    pii_cfg: PIIConfig | None = None,
    **fields,
) -> dict:
    """One row; ``fields`` override the defaults (status 200, not streamed, answered by the student).

    Input and output are masked by ``pii_cfg`` (``params.pii``) before the row exists. The row is written before
    the answer is sent, so this is the fast pass even when ``pii.ner`` is on (see src/slmops/text/pii/__init__.py)."""
    user_text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return {
        "id": request_id,
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "model": model_name,
        "status": 504 if completion.timed_out else 200,
        "stream": False,
        "served_by": "student",
        "fallback": None,
        **fields,
        "input": pii.mask(user_text, cfg=pii_cfg, ner=False),
        "output": pii.mask(completion.text, cfg=pii_cfg, ner=False),
        "latency_ms": round(latency_s * 1000, 2),
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "finish_reason": completion.finish_reason,
    }
