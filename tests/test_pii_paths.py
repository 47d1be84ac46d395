"""A personal name is masked on every path that stores or sends text: prepare, the inference log, the fallback
teacher (what it receives) and the log of its answer."""

from __future__ import annotations

import json

import httpx

from components.config import FallbackConfig, OpenAITeacherConfig, PrepareConfig, ServeConfig
from components.data import run as prepare
from components.inference import ChatModel
from components.io import load_jsonl
from components.serve.app import BackgroundServer, create_app
from components.serve.fallback import Fallback
from components.teacher.openai import OpenAITeacher
from tests.fake_teacher import FakeTeacher, label_json

INQUIRY = "中村健一と申します。愛知県名古屋市中区栄3-4-5 サカエビル302号室に届いていません。電話は（045）123-4567"
SECRETS = ("中村健一", "中村", "健一", "栄3-4-5", "302号室", "123-4567")


def test_prepare_masks_names_and_addresses_and_counts_them_by_type(tmp_path):
    row = {"input": INQUIRY, "expected": {"category": "shipping", "priority": "high"}}
    test = {"input": "ログインできません", "expected": {"category": "account", "priority": "low"}}
    for name, record in (("seed", row), ("test", test)):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = prepare(
        PrepareConfig(val_fraction=0.0),
        labelled=tmp_path / "seed.jsonl",
        unlabelled=None,
        test=tmp_path / "test.jsonl",
        out_dir=out,
    )
    [train] = load_jsonl(out / "train.jsonl")
    assert train["input"] == "[NAME]と申します。[ADDRESS]に届いていません。電話は[PHONE]"
    assert result.pii_masked == {"NAME": 1, "ADDRESS": 1, "PHONE": 1}


def test_a_name_sent_to_the_server_reaches_neither_the_log_nor_the_fallback_teacher(tiny_models, tmp_path):
    log = tmp_path / "inference.jsonl"
    answer = label_json("shipping", "high", "中村健一様、確認いたします。")  # the teacher repeats the name
    with FakeTeacher(lambda messages, attempt: (200, answer, "stop", {})) as fake:
        cfg = FallbackConfig(teacher=OpenAITeacherConfig(base_url=fake.base_url, model="big", max_retries=0))
        teacher = OpenAITeacher(cfg.teacher)
        model = ChatModel.load(tiny_models["int8"])  # random weights: never valid task JSON, so the teacher answers
        app = create_app(model, "slm", log, ServeConfig(max_tokens_cap=32), fallback=Fallback(teacher, cfg))
        with BackgroundServer(app) as server, teacher:
            body = {"model": "slm", "messages": [{"role": "user", "content": INQUIRY}], "max_tokens": 16}
            r = httpx.post(f"http://127.0.0.1:{server.port}/v1/chat/completions", json=body, timeout=60)
            assert r.status_code == 200 and r.headers["x-slmops-served-by"] == "teacher"
        sent = json.dumps(fake.bodies, ensure_ascii=False)
    [row] = load_jsonl(log)
    assert row["input"] == "[NAME]と申します。[ADDRESS]に届いていません。電話は[PHONE]"
    assert "[NAME]様" in row["output"]
    written = log.read_text(encoding="utf-8")
    for secret in SECRETS:
        assert secret not in written and secret not in sent, secret
