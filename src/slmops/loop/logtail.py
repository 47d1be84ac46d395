"""Read what an append-only JSONL log gained since a watermark, across rotations.

Usage:
    from slmops.loop.logtail import Watermark, read_new
    new = read_new(Path("logs/inference.jsonl"), Watermark())   # .rows, .watermark (store it only once the
                                                               #  rows are safely used), .malformed

The server opens the log for every row, so ``mv logs/inference.jsonl logs/inference.jsonl.1`` rotates it
and the next row starts a new file. A file is known by its first line (a hash of it), which survives renames,
plus the byte offset read up to; its inode and last row id are kept for people reading the state. Every
plain file ``<log>`` and ``<log>.*`` is read from its recorded offset, oldest first row first, so a rotated
file's remainder comes before the new file. Only whole lines are consumed: a row being written as we read is
taken next time. Compressed rotations (``.gz``, ``.bz2``, ``.xz``, ``.zst``) are skipped: with logrotate's
``delaycompress`` they were read while still plain.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

COMPRESSED = (".gz", ".bz2", ".xz", ".zst")


class FileMark(BaseModel):
    head: str  # sha256 (16 hex) of the file's first line: its identity across renames
    first_ts: str = ""  # the first row's ts: the order files are read in
    offset: int = 0  # bytes consumed (always at a line end)
    inode: int | None = None
    name: str = ""  # where it was last seen
    last_id: str | None = None  # the id of the last row consumed


class Watermark(BaseModel):
    files: dict[str, FileMark] = {}  # by head; a file that is no longer on disk is forgotten


class LogRow(BaseModel):
    file: str
    line_end: int  # byte offset just past this row
    record: dict[str, Any]


class NewRows(BaseModel):
    rows: list[LogRow]
    malformed: int  # whole lines that are not a JSON object
    watermark: Watermark


def _first_line(path: Path) -> bytes | None:
    with open(path, "rb") as fh:
        line = fh.readline(1 << 20)
    return line if line.endswith(b"\n") else None


def _first_ts(line: bytes) -> str:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    return str(record.get("ts", "")) if isinstance(record, dict) else ""


def log_files(log: Path) -> list[tuple[Path, FileMark]]:
    """The log and its plain rotated siblings that hold at least one whole line, oldest first row first."""
    found = []
    for path in [*log.parent.glob(log.name + ".*"), log]:
        if not path.is_file() or path.name.endswith(COMPRESSED) or path.name.startswith("."):
            continue
        line = _first_line(path)
        if line is None:  # empty, or its first row is still being written
            continue
        head = hashlib.sha256(line).hexdigest()[:16]
        found.append((path, FileMark(head=head, first_ts=_first_ts(line), inode=path.stat().st_ino, name=path.name)))
    # the live log last among equals: its rows are the newest
    return sorted(found, key=lambda item: (item[1].first_ts, item[0] == log, item[0].name))


def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    """Whole lines from ``offset`` on, and the offset after the last of them (from 0 if the file shrank)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < offset:  # truncated in place (copytruncate) and refilled with the same first line
            offset = 0
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    return data[:end], offset + end


def read_new(log: Path, mark: Watermark) -> NewRows:
    """Rows appended to ``log`` (and to files rotated away from it) since ``mark``."""
    rows: list[LogRow] = []
    malformed = 0
    files: dict[str, FileMark] = {}
    for path, seen in log_files(log):
        if seen.head in files:  # a copy of a file already read (same first line): its rows are not new
            continue
        old = mark.files.get(seen.head)
        data, end = _read_from(path, old.offset if old else 0)
        position = end - len(data)
        last_id = old.last_id if old else None
        for line in data.splitlines(keepends=True):
            position += len(line)
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            if not isinstance(record, dict):
                malformed += int(bool(line.strip()))
                continue
            rows.append(LogRow(file=path.name, line_end=position, record=record))
            last_id = str(record.get("id", last_id))
        files[seen.head] = seen.model_copy(update={"offset": end, "last_id": last_id})
    return NewRows(rows=rows, malformed=malformed, watermark=Watermark(files=files))
