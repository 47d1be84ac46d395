"""A personal name is masked on every path that stores or sends text, by the one masker ``params.pii`` configures:
prepare, the teacher's prompts and replies (synthesize), the inference log, the fallback teacher (what it receives)
and the harvest of logged traffic. Each path is also shown to take its ``PIIConfig`` from the caller: a config that
masks phones only leaves the name in place, so the default strictness is not a hard-coded accident."""

from __future__ import annotations

import json

import httpx
import pytest

from slmops.config import FallbackConfig, OpenAITeacherConfig, PIIConfig, PrepareConfig, ServeConfig
from slmops.data.prepare import run as prepare
from slmops.inference.chat_model import ChatModel, Completion
from slmops.io import load_jsonl
from slmops.loop.harvest import PiiLeft
from slmops.serve.app import BackgroundServer, create_app
from slmops.serve.fallback import Fallback
from slmops.serve.inference_log import log_row
from slmops.tasks import load_task
from slmops.teacher.base import TeacherResponse
from slmops.teacher.openai import OpenAITeacher
from slmops.teacher.validate import check_label, check_new_input
from tests.fake_teacher import FakeTeacher, label_json
from tests.projects import TRIAGE
from tests.test_harvest import _run as harvest_run
from tests.test_harvest import append, unique_texts
from tests.test_harvest import log_row as traffic_row

TASK = load_task("ticket_triage", TRIAGE)
INQUIRY = "中村健一と申します。愛知県名古屋市中区栄3-4-5 サカエビル302号室に届いていません。電話は（045）123-4567"
MASKED = "[NAME]と申します。[ADDRESS]に届いていません。電話は[PHONE]"
SECRETS = ("中村健一", "中村", "健一", "栄3-4-5", "302号室", "123-4567")
PHONES_ONLY = PIIConfig(entities=["PHONE"])


def _write(tmp_path, name: str, record: dict) -> None:
    (tmp_path / f"{name}.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("pii_cfg", "expected"), [(None, MASKED), (PHONES_ONLY, INQUIRY.replace("（045）123-4567", "[PHONE]"))]
)
def test_prepare_masks_with_the_configured_masker_and_counts_by_type(tmp_path, pii_cfg, expected):
    _write(tmp_path, "seed", {"input": INQUIRY, "expected": {"category": "shipping", "priority": "high"}})
    _write(tmp_path, "test", {"input": "ログインできません", "expected": {"category": "account", "priority": "low"}})
    result = prepare(
        PrepareConfig(val_fraction=0.0),
        task=TASK,
        labelled=tmp_path / "seed.jsonl",
        unlabelled=None,
        test=tmp_path / "test.jsonl",
        out_dir=tmp_path / "out",
        pii_cfg=pii_cfg,
    )
    [train] = load_jsonl(tmp_path / "out" / "train.jsonl")
    assert train["input"] == expected
    assert result.pii_masked == ({"PHONE": 1} if pii_cfg else {"NAME": 1, "ADDRESS": 1, "PHONE": 1})


def test_teacher_replies_and_new_inputs_are_masked_by_the_configured_masker():
    reply = TeacherResponse(text=label_json("shipping", "high", "中村健一様、確認いたします。"), finish_reason="stop")
    label, reason = check_label(TASK, reply, "荷物が届きません")
    assert reason is None and label.reply == "[NAME]様、確認いたします。"
    label, _ = check_label(TASK, reply, "荷物が届きません", PHONES_ONLY)
    assert "中村健一" in label.reply
    from slmops.text.dedup import NearDupIndex

    written = TeacherResponse(text="松本由美です。請求書が二重に届きました。確認をお願いします。", finish_reason="stop")
    text, reason = check_new_input(TASK, written, "ログインできません", NearDupIndex(0.9), NearDupIndex(0.9))
    assert reason is None and text.startswith("[NAME]です。")


def test_the_log_row_takes_its_masker_from_params():
    done = Completion(text="中村健一様、確認します。", prompt_tokens=1, completion_tokens=1, finish_reason="stop")
    messages = [{"role": "user", "content": INQUIRY}]
    row = log_row("r1", "slm", messages, done, 0.01)
    assert row["input"] == MASKED and row["output"] == "[NAME]様、確認します。"
    assert "中村健一" in log_row("r1", "slm", messages, done, 0.01, PHONES_ONLY)["input"]


def test_harvest_refuses_a_batch_holding_a_name_and_follows_params(tmp_path):
    texts = unique_texts(2, seed=3)
    append(
        tmp_path / "inference.jsonl",
        [traffic_row(0, texts[0]), traffic_row(1, "松本由美様からの依頼です。" + texts[1])],
    )
    with pytest.raises(PiiLeft, match=r"chatcmpl-000001 \(NAME\)"):
        harvest_run(tmp_path)
    assert harvest_run(tmp_path, pii_cfg=PHONES_ONLY).selected == 2  # a phones-only masker lets the name through


def test_a_name_sent_to_the_server_reaches_neither_the_log_nor_the_fallback_teacher(tiny_models, tmp_path):
    log = tmp_path / "inference.jsonl"
    answer = label_json("shipping", "high", "中村健一様、確認いたします。")  # the teacher repeats the name
    with FakeTeacher(lambda messages, attempt: (200, answer, "stop", {})) as fake:
        cfg = FallbackConfig(teacher=OpenAITeacherConfig(base_url=fake.base_url, model="big", max_retries=0))
        teacher = OpenAITeacher(cfg.teacher)
        model = ChatModel.load(tiny_models["int8"])  # random weights: never valid task JSON, so the teacher answers
        strict = PIIConfig()
        fallback = Fallback(teacher, cfg, TASK, strict)
        app = create_app(model, "slm", log, ServeConfig(max_tokens_cap=32), fallback=fallback, pii_cfg=strict)
        with BackgroundServer(app) as server, teacher:
            body = {"model": "slm", "messages": [{"role": "user", "content": INQUIRY}], "max_tokens": 16}
            r = httpx.post(f"http://127.0.0.1:{server.port}/v1/chat/completions", json=body, timeout=60)
            assert r.status_code == 200 and r.headers["x-slmops-served-by"] == "teacher"
        sent = json.dumps(fake.bodies, ensure_ascii=False)
    [row] = load_jsonl(log)
    assert row["input"] == MASKED
    assert "[NAME]様" in row["output"]
    written = log.read_text(encoding="utf-8")
    for secret in SECRETS:
        assert secret not in written and secret not in sent, secret


def test_the_model_sees_user_messages_as_it_was_trained_on_them():
    """prepare NFKC-normalises and masks every training input; the server does the same to what the model sees,
    so served inputs do not differ from the training inputs (serve.mask_inputs)."""
    from types import SimpleNamespace

    from slmops.config import ServeConfig
    from slmops.serve.state import as_trained

    messages = [
        {"role": "system", "content": "電話 090-1234-5678"},
        {"role": "user", "content": "電話は０９０-１２３４-５６７８です"},
    ]
    seen = as_trained(messages, SimpleNamespace(cfg=ServeConfig(), pii_cfg=None))
    assert seen[1]["content"] == "電話は[PHONE]です" and seen[0] == messages[0]
    raw = as_trained(messages, SimpleNamespace(cfg=ServeConfig(mask_inputs=False), pii_cfg=None))
    assert raw == messages


def test_slmops_evaluate_reads_inputs_as_the_served_model_does(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import slmops.cli
    import slmops.cli.models
    import slmops.evaluate.stage
    from slmops.config import load_params

    seen: list[str] = []

    def evaluate_model(model, task, rows, max_new_tokens, **kwargs):
        seen.extend(r["input"] for r in rows)
        return {"n": len(rows)}, []

    for mask_inputs in (True, False):
        params = load_params("smoke", project=TRIAGE, overrides=[f"serve.mask_inputs={str(mask_inputs).lower()}"])
        monkeypatch.setattr(slmops.cli.models, "setup", lambda *a, p=params, **k: p)
        monkeypatch.setattr(slmops.cli.models, "load_model", lambda *a: None)
        monkeypatch.setattr(slmops.evaluate.stage, "evaluate_model", evaluate_model)
        data = tmp_path / "rows.jsonl"
        expected = {"category": "account", "priority": "low"}
        row = {"input": "中村健一です。ＴＥＬ 090-1234-5678 まで", "expected": expected}
        data.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
        args = ["evaluate", "--model", "poc", "--data", str(data), "--project", str(TRIAGE)]
        result = CliRunner().invoke(slmops.cli.app, args)
        assert result.exit_code == 0, result.output
    masked, raw = seen
    assert "中村" not in masked and "[PHONE]" in masked and "TEL" in masked  # masked and NFKC, as the server does
    assert "中村健一" in raw and "090-1234-5678" in raw
