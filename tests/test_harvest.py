"""Harvest: prioritised, de-duplicated, decontaminated traffic with provenance; a watermark that survives
rotation, a crash between batch and state, and SIGKILL mid-harvest, taking every row exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slmops.config import HarvestConfig
from slmops.io import load_jsonl, write_jsonl
from slmops.loop import harvest
from slmops.loop.harvest import STATE, PiiLeft, load_state, pending_rows, run
from slmops.tasks import load_task
from slmops.text import pii
from tests.conftest import REPO
from tests.projects import TRIAGE

task = load_task("ticket_triage", TRIAGE)
T0 = datetime(2026, 11, 1, tzinfo=UTC)
WORDS = (
    "注文 配送 請求 返品 交換 画面 電源 充電 設定 アプリ 会員 解約 予約 在庫 店舗 保証 修理 部品 説明書 色 "
    "サイズ 重さ 音 匂い 温度 速度 接続 更新 登録 変更 確認 連絡 案内 到着 梱包 箱 袋 伝票 窓口 担当"
).split()


def unique_texts(n: int, seed: int) -> list[str]:
    """Texts no two of which are near-duplicates (random word strings; no digits, which the key folds)."""
    rng = random.Random(seed)
    return ["、".join(rng.sample(WORDS, 8)) + "について教えてください。" for _ in range(n)]


def answer(category: str = "shipping") -> str:
    return json.dumps({"category": category, "priority": "medium", "reply": "確認いたします。"}, ensure_ascii=False)


def log_row(i: int, text: str, **fields) -> dict:
    row = {
        "id": f"chatcmpl-{i:06d}",
        "ts": (T0 + timedelta(seconds=i)).isoformat(timespec="milliseconds"),
        "model": "ticket-triage-slm",
        "model_version": "3",
        "status": 200,
        "stream": False,
        "served_by": "student",
        "fallback": None,
        "input": text,
        "output": answer(),
        "latency_ms": 12.0,
        "prompt_tokens": 30,
        "completion_tokens": 20,
        "finish_reason": "stop",
    }
    return row | fields


def append(log: Path, rows: list[dict]) -> None:
    with open(log, "a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def harvested(out: Path) -> list[dict]:
    return [r for b in load_state(out / STATE).batches for r in load_jsonl(out / b.file)]


def _run(tmp_path, cfg=None, train=(), eval_sets=(), **kw):
    return run(
        cfg or HarvestConfig(),
        task=task,
        log=tmp_path / "inference.jsonl",
        out_dir=tmp_path / "traffic",
        train=list(train),
        eval_sets=list(eval_sets),
        **kw,
    )


def test_weakest_rows_come_first_with_provenance_and_the_cap_holds(tmp_path):
    texts = unique_texts(9, seed=1)
    train = tmp_path / "train.jsonl"
    write_jsonl(train, [{"input": t + "よろしく", "expected": {}} for t in unique_texts(50, seed=2)])
    rows = [log_row(i, t) for i, t in enumerate(texts[:5])]  # ordinary traffic
    rows.append(log_row(5, texts[5], min_token_prob=0.2))
    rows.append(log_row(6, texts[6], output="{not json"))
    rows.append(log_row(7, texts[7], served_by="teacher", fallback="invalid_output"))
    rows.append(log_row(8, texts[8], output=answer("other")))
    append(tmp_path / "inference.jsonl", rows)

    cfg = HarvestConfig(max_rows_per_batch=4, novelty_similarity=0.01)  # drifted regions: the next test
    result = _run(tmp_path, cfg, train=[train], drifted_values={"category": ["other"]})
    got = harvested(tmp_path / "traffic")
    assert [r["provenance"]["log_id"] for r in got[:4]] == [f"chatcmpl-{i:06d}" for i in (7, 6, 5, 8)]
    assert result.by_reason == {"teacher_fallback": 1, "invalid_output": 1, "low_confidence": 1, "drifted_label": 1}
    assert result.dropped == {"over_cap": 5} and result.selected == 4 and result.rows_read == 9
    first = got[0]
    assert first["id"] == "traffic-chatcmpl-000007" and first["input"] == texts[7]
    p = first["provenance"]
    assert (p["model_version"], p["served_by"], p["fallback"], p["batch"]) == ("3", "teacher", "invalid_output", 1)
    assert p["ts"] == rows[7]["ts"] and p["served_output"] == rows[7]["output"]
    assert got[2]["provenance"]["confidence"] == 0.2
    assert "drifted_region" not in result.flagged


def test_inputs_far_from_every_training_input_are_flagged_as_a_drifted_region(tmp_path):
    from slmops.demo.generate import generate

    sets = generate(1, 1000, 10, 20)
    train = tmp_path / "train.jsonl"
    write_jsonl(train, sets["seed"])
    novel = [
        "新しく発売したドローンの飛行許可の申請代行サービスについて質問があります。",
        "法人契約の見積書を三部、紙で郵送してもらえますか。",
    ]
    texts = [pii.mask(r["input"]) for r in sets["test"][:10]] + novel  # masked, as the server logs them
    append(tmp_path / "inference.jsonl", [log_row(i, t) for i, t in enumerate(texts)])
    result = _run(tmp_path, train=[train])
    assert result.flagged["drifted_region"] == 2 and result.by_reason["drifted_region"] == 2
    first = harvested(tmp_path / "traffic")[:2]
    assert {r["input"] for r in first} == set(novel) and all(r["provenance"]["novelty"] > 0.7 for r in first)


def test_duplicates_training_rows_eval_inputs_and_earlier_harvests_are_dropped(tmp_path):
    texts = unique_texts(8, seed=3)
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    write_jsonl(train, [{"input": texts[0]}])
    write_jsonl(test, [{"input": texts[1] + "!!"}])  # a near-duplicate of a test input: contamination
    append(tmp_path / "inference.jsonl", [log_row(0, texts[2])])
    assert _run(tmp_path, train=[train], eval_sets=[test]).selected == 1
    rows = [
        log_row(1, texts[0]),  # a training input
        log_row(2, texts[1]),  # an eval input
        log_row(3, texts[2].replace("、", " ")),  # harvested in batch 1
        log_row(4, texts[3]),
        log_row(5, texts[3]),  # exact duplicate in this batch
        log_row(6, "ええと、" + texts[3]),  # near-duplicate in this batch
        log_row(7, texts[4]),
        log_row(8, texts[5], status=504),
        log_row(9, "はい"),
    ]
    append(tmp_path / "inference.jsonl", rows)
    with open(tmp_path / "inference.jsonl", "a") as fh:
        fh.write("{torn line\n")
    result = _run(tmp_path, train=[train], eval_sets=[test])
    assert result.selected == 2 and result.batch_index == 2 and result.rows_total == 3
    expected_drops = {"in_training": 1, "in_eval": 1, "already_harvested": 1, "duplicate": 2}
    assert result.dropped == expected_drops | {"not_answered": 1, "too_short": 1, "malformed": 1}
    kept = {r["input"] for r in load_jsonl(result.batch)}
    assert texts[4] in kept and len(kept & {texts[3], "ええと、" + texts[3]}) == 1  # one of the near-twins


def test_rotation_reads_the_rotated_remainder_then_the_new_file(tmp_path):
    log = tmp_path / "inference.jsonl"
    texts = unique_texts(40, seed=4)
    append(log, [log_row(i, texts[i]) for i in range(10)])
    assert _run(tmp_path).selected == 10
    append(log, [log_row(i, texts[i]) for i in range(10, 15)])
    os.rename(log, log.with_name("inference.jsonl.1"))
    append(log, [log_row(i, texts[i]) for i in range(15, 20)])
    assert pending_rows(log, tmp_path / "traffic") == 10
    result = _run(tmp_path)
    assert [r["provenance"]["log_id"][-2:] for r in load_jsonl(result.batch)] == [f"{i:02d}" for i in range(10, 20)]
    assert [r["provenance"]["log_file"] for r in load_jsonl(result.batch)] == ["inference.jsonl.1"] * 5 + [
        "inference.jsonl"
    ] * 5
    # rotated twice between harvests: .1 -> .2, live -> .1, a new live file
    append(log, [log_row(i, texts[i]) for i in range(20, 25)])
    os.rename(log.with_name("inference.jsonl.1"), log.with_name("inference.jsonl.2"))
    os.rename(log, log.with_name("inference.jsonl.1"))
    append(log, [log_row(i, texts[i]) for i in range(25, 30)])
    result = _run(tmp_path)
    assert [r["provenance"]["log_id"][-2:] for r in load_jsonl(result.batch)] == [f"{i:02d}" for i in range(20, 30)]
    assert _run(tmp_path).rows_read == 0 and pending_rows(log, tmp_path / "traffic") == 0


def test_a_row_still_being_written_is_taken_next_time(tmp_path):
    log = tmp_path / "inference.jsonl"
    texts = unique_texts(2, seed=5)
    append(log, [log_row(0, texts[0])])
    line = json.dumps(log_row(1, texts[1]), ensure_ascii=False)
    with open(log, "a") as fh:
        fh.write(line[:40])
    assert _run(tmp_path).selected == 1
    with open(log, "a") as fh:
        fh.write(line[40:] + "\n")
    result = _run(tmp_path)
    assert result.selected == 1 and load_jsonl(result.batch)[0]["input"] == texts[1]


def test_personal_data_left_in_a_row_stops_the_harvest_before_anything_is_written(tmp_path):
    texts = unique_texts(3, seed=6)
    rows = [log_row(0, texts[0]), log_row(1, texts[1] + "携帯090-1234-5678"), log_row(2, texts[2])]
    append(tmp_path / "inference.jsonl", rows)
    with pytest.raises(PiiLeft, match=r"chatcmpl-000001 \(PHONE\)") as err:
        _run(tmp_path)
    assert "1234" not in str(err.value)  # the message names the row and the kind, never the value
    assert not list((tmp_path / "traffic").glob("batch-*")) and not load_state(tmp_path / "traffic" / STATE).batches


def test_a_crash_between_the_batch_and_the_state_redoes_that_batch_taking_nothing_twice(tmp_path, monkeypatch):
    log = tmp_path / "inference.jsonl"
    texts = unique_texts(20, seed=7)
    append(log, [log_row(i, texts[i]) for i in range(10)])
    real = harvest._write_durable

    def crash_on_state(path, text):
        if path.name == STATE:
            raise KeyboardInterrupt("killed")
        real(path, text)

    monkeypatch.setattr(harvest, "_write_durable", crash_on_state)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    assert (tmp_path / "traffic" / "batch-00001.jsonl").exists()  # written, but never committed
    monkeypatch.setattr(harvest, "_write_durable", real)
    append(log, [log_row(i, texts[i]) for i in range(10, 20)])
    result = _run(tmp_path)
    assert result.batch_index == 1 and result.selected == 20
    ids = [r["provenance"]["log_id"] for r in harvested(tmp_path / "traffic")]
    assert sorted(ids) == [f"chatcmpl-{i:06d}" for i in range(20)]


CHILD = """
import sys
from pathlib import Path
from slmops.config import HarvestConfig
from slmops.loop.harvest import run
from slmops.tasks import load_task
from tests.projects import TRIAGE
task, cfg = load_task("ticket_triage", TRIAGE), HarvestConfig(near_dup_threshold=1.0, max_rows_per_batch=100_000)
while True:
    run(cfg, task=task, log=Path(sys.argv[1]), out_dir=Path(sys.argv[2]), train=[], eval_sets=[])
"""


def _batches(out: Path) -> int:
    try:
        return len(load_state(out / STATE).batches)
    except (OSError, ValueError):
        return 0


def test_sigkill_mid_harvest_loses_no_row_and_takes_none_twice(tmp_path):
    """A child harvests in a loop while rows arrive and the log rotates; it is SIGKILLed at varied moments
    and restarted. Afterwards every answered row is in exactly one batch."""
    log, out = tmp_path / "inference.jsonl", tmp_path / "traffic"
    texts = unique_texts(1200, seed=8)
    written, uncommitted = 0, 0
    for round_ in range(6):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(log), str(out)], cwd=REPO)
        before = _batches(out)
        for _ in range(4):  # rows keep arriving while the child harvests
            append(log, [log_row(i, texts[i]) for i in range(written, written + 50)])
            written += 50
        if round_ % 2:
            rotated = log.with_name("inference.jsonl.1")
            if rotated.exists():
                os.rename(rotated, log.with_name(f"inference.jsonl.{round_}"))
            os.rename(log, rotated)
        deadline = time.monotonic() + 60
        while _batches(out) <= before and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.003 * round_)  # vary the moment of the kill within the next harvests
        child.send_signal(signal.SIGKILL)
        child.wait()
        committed = {b.file for b in load_state(out / STATE).batches}
        uncommitted += sum(p.name not in committed for p in out.glob("batch-*.jsonl"))
    cfg = HarvestConfig(near_dup_threshold=1.0, max_rows_per_batch=100_000)
    run(cfg, task=task, log=log, out_dir=out, train=[], eval_sets=[])
    assert run(cfg, task=task, log=log, out_dir=out, train=[], eval_sets=[]).rows_read == 0
    ids = Counter(r["provenance"]["log_id"] for r in harvested(out))
    assert max(ids.values()) == 1, [k for k, v in ids.items() if v > 1][:5]
    assert set(ids) == {f"chatcmpl-{i:06d}" for i in range(written)}
    assert not list(out.glob(".batch-*")) and not list(out.glob(f".{STATE}.*"))
    print(f"{_batches(out)} batches; kills that left an uncommitted batch: {uncommitted}")
