"""Recent-traffic eval set: the newest labelled rows by time, nothing near them left in training."""

from __future__ import annotations

import pytest

from slmops.config import LoopConfig
from slmops.io import write_jsonl
from slmops.loop.recent import load_rows, split_recent
from tests.test_harvest import unique_texts


def rows(n: int, seed: int = 0) -> list[dict]:
    texts = unique_texts(n, seed)
    return [
        {
            "id": f"traffic-{i:03d}",
            "input": t,
            "expected": {"category": "shipping"},
            "provenance": {"ts": f"2026-11-01T10:{i:02d}:00.000+00:00"},
        }
        for i, t in enumerate(texts)
    ]


def test_the_newest_fraction_is_held_out_whatever_the_file_order(tmp_path):
    data = rows(20)
    write_jsonl(tmp_path / "batch-00001.jsonl", data[10:][::-1])  # files and rows out of time order
    write_jsonl(tmp_path / "batch-00002.jsonl", data[:10])
    split = split_recent(load_rows([tmp_path / "batch-00001.jsonl", tmp_path / "batch-00002.jsonl"]), LoopConfig())
    assert [r["id"] for r in split.recent] == [f"traffic-{i:03d}" for i in range(16, 20)]
    assert sorted(r["id"] for r in split.train) == [f"traffic-{i:03d}" for i in range(16)]
    assert split.cutoff_ts == data[16]["provenance"]["ts"]


def test_a_row_count_overrides_the_fraction_and_unlabelled_rows_are_in_neither_part():
    data = rows(20)
    for r in data[::5]:
        del r["expected"]  # the teacher's label was rejected
    split = split_recent(data, LoopConfig(recent_eval_rows=3))
    assert [r["id"] for r in split.recent] == ["traffic-017", "traffic-018", "traffic-019"]
    assert len(split.train) == 13 and split.unlabelled == 4
    assert len(split_recent(data[:2], LoopConfig(recent_eval_rows=50)).recent) == 1  # never more than there is


def test_training_rows_near_a_held_out_row_are_dropped():
    data = rows(10)
    data[2]["input"] = data[9]["input"] + "!!"  # an older near-twin of the newest row
    split = split_recent(data, LoopConfig(recent_eval_rows=1))
    assert split.dropped_near_recent == 1 and "traffic-002" not in {r["id"] for r in split.train}
    assert len(split.train) == 8


def test_a_row_without_a_time_is_a_clear_error():
    data = rows(3)
    del data[1]["provenance"]
    with pytest.raises(ValueError, match="traffic-001.*no time"):
        split_recent(data, LoopConfig())
