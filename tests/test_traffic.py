"""The teacher labels harvested traffic: rejects never reach training, labels are cached, the newest rows are held
out as the recent-traffic eval set and kept out of the training file."""

from __future__ import annotations

import json

from slmops.config import CallableTeacherConfig, HarvestConfig, LoopConfig, SynthesizeConfig
from slmops.io import load_jsonl, write_jsonl
from slmops.loop.harvest import run as harvest
from slmops.loop.label_traffic import run
from slmops.synthesize import stage as synthesize
from slmops.tasks import load_task
from tests.projects import TRIAGE
from tests.test_harvest import log_row, unique_texts

task = load_task("ticket_triage", TRIAGE)
BAD = "解約"  # inputs with this word get an answer outside the task's schema


def scripted(messages: list[dict], **_) -> str:
    text = messages[-1]["content"]
    if BAD in text:
        return json.dumps({"category": "not-a-category", "priority": "medium", "reply": "x"})
    return json.dumps({"category": "shipping", "priority": "medium", "reply": "確認いたします。"}, ensure_ascii=False)


def _traffic(tmp_path, n: int = 40):
    texts = unique_texts(n, seed=7)
    write_jsonl(tmp_path / "inference.jsonl", [log_row(i, t) for i, t in enumerate(texts)])
    for name in ("train", "test"):
        write_jsonl(tmp_path / f"{name}.jsonl", [])
    harvest(
        HarvestConfig(),
        task=task,
        log=tmp_path / "inference.jsonl",
        out_dir=tmp_path / "traffic",
        train=[tmp_path / "train.jsonl"],
        eval_sets=[tmp_path / "test.jsonl"],
    )
    return texts


def _label(tmp_path, cfg: SynthesizeConfig):
    return run(
        cfg,
        LoopConfig(recent_eval_rows=10),
        task=task,
        traffic_dir=tmp_path / "traffic",
        out_dir=tmp_path / "labelled",
        cache_path=tmp_path / "cache.sqlite",
        near_dup_threshold=0.8,
    )


def test_rejected_labels_never_reach_training_and_the_newest_rows_are_held_out(tmp_path):
    texts = _traffic(tmp_path)
    cfg = SynthesizeConfig(
        teacher=CallableTeacherConfig(kind="callable", target="tests.test_traffic:scripted", model="s")
    )
    result = _label(tmp_path, cfg)
    bad = {t for t in texts if BAD in t}
    assert bad and sum(result.rejected.values()) == len(bad)
    train, recent = load_jsonl(tmp_path / "labelled/train.jsonl"), load_jsonl(tmp_path / "labelled/recent.jsonl")
    rejected = {r["input"] for r in load_jsonl(tmp_path / "labelled/rejects.jsonl")}
    assert rejected == bad and not rejected & {r["input"] for r in train + recent}
    assert len(recent) == 10 and len(train) + len(recent) == len(texts) - len(bad)
    newest = max(r["traffic"]["ts"] for r in train)
    assert all(r["traffic"]["ts"] > newest for r in recent)  # held out by time
    assert all(r["source"] == "traffic" and r["provenance"]["teacher_id"] for r in train)
    assert result.teacher_calls == len(texts)
    assert _label(tmp_path, cfg).teacher_calls == 0  # a rerun: every answer comes from the cache

    # synthesize adds the older labelled traffic to the training set and keeps the recent rows out of it
    prepared = tmp_path / "prepared"
    write_jsonl(prepared / "train.jsonl", [])
    write_jsonl(prepared / "pool.jsonl", [])
    write_jsonl(prepared / "test.jsonl", [])
    synthesize.run(
        cfg.model_copy(update={"augment_per_category": 0}),
        task=task,
        train=prepared / "train.jsonl",
        pool=prepared / "pool.jsonl",
        test=prepared / "test.jsonl",
        out_dir=tmp_path / "synthetic",
        cache_path=tmp_path / "cache.sqlite",
        traffic=tmp_path / "labelled/train.jsonl",
        recent=tmp_path / "labelled/recent.jsonl",
    )
    trained = load_jsonl(tmp_path / "synthetic/train.jsonl")
    assert {r["id"] for r in trained} == {r["id"] for r in train}
    assert not {r["input"] for r in recent} & {r["input"] for r in trained}
