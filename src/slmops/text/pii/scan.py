"""Scan files for suspected PII before they enter the pipeline: JSONL (every string value), CSV/TSV (every cell)
and plain text (every line).

Usage:
    slmops pii scan data/raw/tickets.jsonl notes.txt        # file:line: LABEL (field); exit 1 if anything found
    python -c "from slmops.text.pii.scan import scan_file; print(list(scan_file('notes.txt')))"

The report names the file, the line, the entity type and the JSON field or CSV column, never the value itself:
the report is a file people share, so it must not become a copy of the data.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from slmops.config import PIIConfig

BATCH = 256  # texts analysed together (one nlp.pipe call)


class Finding(NamedTuple):
    path: str
    line: int  # 1-based
    label: str
    field: str | None  # JSON key path or CSV column; None for plain text

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"{self.path}:{self.line}: {self.label}{where}"


def _json_strings(value, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path or "$", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _json_strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_strings(item, f"{path}[{i}]")


def iter_texts(path: Path) -> Iterator[tuple[int, str | None, str]]:
    """``(line, field, text)`` for every piece of text in the file, by its kind (from the suffix)."""
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        if suffix in {".csv", ".tsv"}:
            reader = csv.reader(f, delimiter="\t" if suffix == ".tsv" else ",")
            header = next(reader, [])
            yield from ((1, f"header[{i}]", cell) for i, cell in enumerate(header) if cell)
            for row in reader:
                for i, cell in enumerate(row):
                    if cell:
                        yield reader.line_num, header[i] if i < len(header) else f"column {i + 1}", cell
            return
        for n, line in enumerate(f, start=1):
            if suffix in {".jsonl", ".ndjson"}:
                try:
                    yield from ((n, field, text) for field, text in _json_strings(json.loads(line)))
                    continue
                except json.JSONDecodeError:
                    pass  # not JSON: scanned as text below, so nothing is skipped
            if line.strip():
                yield n, None, line.rstrip("\n")


def scan_file(path: Path | str, cfg: PIIConfig | None = None) -> Iterator[Finding]:
    """Every PII finding in one file, in file order (one per entity found)."""
    from slmops.text.pii import analyze_many

    path = Path(path)
    pending: list[tuple[int, str | None, str]] = []

    def flush() -> Iterator[Finding]:
        for (line, field, _), found in zip(pending, analyze_many([t for _, _, t in pending], cfg), strict=True):
            yield from (Finding(str(path), line, f.label, field) for f in found)
        pending.clear()

    for item in iter_texts(path):
        pending.append(item)
        if len(pending) >= BATCH:
            yield from flush()
    yield from flush()
