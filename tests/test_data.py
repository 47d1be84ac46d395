"""Data contracts: the shipped generator's sets never overlap; prepare reports bad rows and leaks nothing."""

from __future__ import annotations

import json

from slmops.config import PrepareConfig
from slmops.data.prepare import near_dup_key, run
from slmops.demo.generate import generate, overlap_report
from slmops.io import load_jsonl
from slmops.tasks import load_task
from slmops.text.pii import find_pii
from tests.projects import REVIEWS, TRIAGE

TASK = load_task("ticket_triage", TRIAGE)


def test_generator_sizes_and_no_test_input_in_training_inputs():
    sets = generate(seed=42, n_seed=300, n_pool=3000, n_test=300)
    assert len(sets["test"]) == 300 and len(sets["seed"]) >= 300 and len(sets["pool"]) >= 3000
    assert overlap_report(sets)["test_in_train_exact"] == 0.0
    train_keys = {near_dup_key(r["input"]) for r in sets["seed"] + sets["pool"]}
    near = sum(near_dup_key(r["input"]) in train_keys for r in sets["test"])
    assert near / 300 < 0.05  # the normalised near-duplicates, removed by prepare, are rare too


def test_generator_is_deterministic():
    assert generate(7, 20, 20, 20) == generate(7, 20, 20, 20)


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_prepare_reports_bad_rows_with_line_numbers_and_keeps_good_ones(tmp_path):
    good = {
        "input": "注文した商品が届きません。電話は090-1234-5678です",
        "expected": {"category": "shipping", "priority": "high"},
    }
    _write(
        tmp_path / "seed.jsonl",
        [
            json.dumps(good, ensure_ascii=False),
            "{not json",
            json.dumps(
                {"input": "請求が二重です", "expected": {"category": "money", "priority": "high"}}, ensure_ascii=False
            ),
            json.dumps({"expected": {"category": "other", "priority": "low"}}),
            json.dumps(good, ensure_ascii=False),  # exact duplicate
            json.dumps(
                {"input": "ログインできません", "expected": {"category": "account", "priority": "medium"}},
                ensure_ascii=False,
            ),
        ],
    )
    _write(
        tmp_path / "test.jsonl",
        [
            json.dumps(
                {"input": "ログインできません", "expected": {"category": "account", "priority": "low"}},
                ensure_ascii=False,
            )
        ],
    )
    result = run(
        PrepareConfig(val_fraction=0.0),
        task=TASK,
        labelled=tmp_path / "seed.jsonl",
        unlabelled=None,
        test=tmp_path / "test.jsonl",
        out_dir=tmp_path / "out",
    )
    rejects = load_jsonl(tmp_path / "out" / "rejects.jsonl")
    by_line = {r["line"]: r["reason"] for r in rejects}
    assert set(by_line) == {2, 3, 4}
    assert "invalid JSON" in by_line[2] and "category" in by_line[3] and "input" in by_line[4]
    train = load_jsonl(tmp_path / "out" / "train.jsonl")
    assert [r["input"] for r in train] == ["注文した商品が届きません。電話は[PHONE]です"]  # masked, deduped
    assert result.rejected["duplicate_labelled"] == 2  # the repeat, and the row equal to a test input
    assert result.pii_masked == {"PHONE": 2}  # counted as masked, before the duplicate is dropped


def test_prepare_reads_csv(tmp_path):
    (tmp_path / "seed.csv").write_text(
        "input,category,priority,reply\n配送が遅い,shipping,medium,確認します\n壊れていた,defect,wrong,\n",
        encoding="utf-8",
    )
    _write(
        tmp_path / "test.jsonl",
        [
            json.dumps(
                {"input": "解約したい", "expected": {"category": "cancellation", "priority": "low"}}, ensure_ascii=False
            )
        ],
    )
    run(
        PrepareConfig(val_fraction=0.0, min_chars=1),
        task=TASK,
        labelled=tmp_path / "seed.csv",
        unlabelled=None,
        test=tmp_path / "test.jsonl",
        out_dir=tmp_path / "out",
    )
    assert [r["input"] for r in load_jsonl(tmp_path / "out" / "train.jsonl")] == ["配送が遅い"]
    assert [r["line"] for r in load_jsonl(tmp_path / "out" / "rejects.jsonl")] == [3]


def test_prepared_demo_splits_do_not_overlap_and_hold_no_pii(tmp_path):
    from slmops.demo import write_data

    write_data("slmops.demo.generate:generate", 3, 150, 300, 60, tmp_path / "raw")
    raw = tmp_path / "raw"
    run(
        PrepareConfig(),
        task=TASK,
        labelled=raw / "seed.jsonl",
        unlabelled=raw / "pool.jsonl",
        test=raw / "test.jsonl",
        out_dir=tmp_path / "p",
    )
    keys = {
        name: {near_dup_key(r["input"]) for r in load_jsonl(tmp_path / "p" / f"{name}.jsonl")}
        for name in ("train", "val", "test", "pool")
    }
    assert not keys["test"] & (keys["train"] | keys["val"] | keys["pool"])
    assert not keys["val"] & keys["train"]
    for name in ("train", "val", "test", "pool"):
        for row in load_jsonl(tmp_path / "p" / f"{name}.jsonl"):
            assert not find_pii(row["input"]), row["input"]


REVIEWS = load_task("review_insights", REVIEWS)
REVIEW_ROWS = [
    {
        "id": "r1",
        "review": "翌日に届きました。コスパが最高です。",
        "rating": 5,
        "aspects": ["delivery", "price"],
        "summary": "配送・価格に満足。",
    },
    {
        "id": "r2",
        "review": "すぐに壊れてしまいました。",
        "rating": 1,
        "aspects": ["quality"],
        "summary": "品質に不満。",
    },
    {
        "id": "r3",
        "review": "見た目がおしゃれです。説明書が分かりにくいです。",
        "rating": 3,
        "aspects": ["design", "usability"],
        "summary": "デザインに満足、使いやすさに不満。",
    },
    {"id": "r4", "review": "梱包が丁寧でした。", "rating": 9, "aspects": ["delivery"], "summary": "配送に満足。"},
]


def _prepare_reviews(tmp_path, labelled, columns=None, name="out"):
    from slmops.config import SourceConfig

    src = SourceConfig(path=str(labelled), columns=columns or {})
    cfg = PrepareConfig(val_fraction=0.0, min_chars=1)
    result = run(
        cfg, task=REVIEWS, labelled=src, unlabelled=None, test=None, out_dir=tmp_path / name, test_fraction=0.3
    )
    return result, {split: load_jsonl(tmp_path / name / f"{split}.jsonl") for split in ("train", "test")}


def test_csv_jsonl_and_parquet_with_a_column_mapping_prepare_the_same_rows(tmp_path):
    import pandas as pd

    renamed = [
        {"text": r["review"], "stars": r["rating"], **{k: r[k] for k in ("id", "aspects", "summary")}}
        for r in REVIEW_ROWS
    ]
    columns = {"review": "text", "rating": "stars"}
    _write(tmp_path / "rows.jsonl", [json.dumps(r, ensure_ascii=False) for r in renamed])
    frame = pd.DataFrame(renamed)
    frame.assign(aspects=frame["aspects"].map("|".join)).to_csv(tmp_path / "rows.csv", index=False)
    frame.to_parquet(tmp_path / "rows.parquet")
    outs = {
        kind: _prepare_reviews(tmp_path, tmp_path / f"rows.{kind}", columns, kind)
        for kind in ("jsonl", "csv", "parquet")
    }
    rows = {kind: splits for kind, (_, splits) in outs.items()}
    assert rows["csv"] == rows["jsonl"] == rows["parquet"]
    # rating 9 is outside the spec's 1..5: rejected with its line, never silently dropped
    rejects = {kind: load_jsonl(tmp_path / kind / "rejects.jsonl") for kind in outs}
    assert [(r["line"], r["reason"].split(":")[0]) for r in rejects["jsonl"]] == [(4, "expected.rating")]
    assert [r["line"] for r in rejects["csv"]] == [5]  # the CSV header is line 1


def test_without_a_test_source_a_test_set_is_split_off_leak_free(tmp_path):
    rows = REVIEW_ROWS[:3] + [dict(r, id=r["id"] + "-twin", review=r["review"] + " ") for r in REVIEW_ROWS[:3]]
    _write(tmp_path / "rows.jsonl", [json.dumps(r, ensure_ascii=False) for r in rows])
    result, splits = _prepare_reviews(tmp_path, tmp_path / "rows.jsonl")
    assert result.counts["test"] >= 1 and result.rejected["duplicate_labelled"] == 3
    train_keys = {near_dup_key(r["input"]) for r in splits["train"]}
    assert not train_keys & {near_dup_key(r["input"]) for r in splits["test"]}
