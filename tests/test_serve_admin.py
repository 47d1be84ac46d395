"""Admin routes need an admin key (an API key is refused); without one configured, loopback only. Every
reload is logged with who asked (a key id, never the key) and what changed."""

from __future__ import annotations

import logging

import httpx
import pytest

from slmops.config import ServeConfig
from slmops.inference.chat_model import ChatModel
from slmops.serve.app import BackgroundServer, create_app
from slmops.serve.keys import KeyRing
from slmops.serve.reload import ModelHolder, ServedModel

KEYS = KeyRing(api_keys=frozenset({"user-key-123"}), admin_keys=frozenset({"admin-key-456"}))


@pytest.fixture(scope="module")
def model(tiny_models) -> ChatModel:
    return ChatModel.load(tiny_models["int8"])


def _holder(model: ChatModel, version: dict) -> ModelHolder:
    """A holder whose alias points at ``version["now"]`` (the same weights under a new version id)."""
    return ModelHolder(ServedModel(model, "1"), loader=lambda: (model, version["now"]), probe=lambda: version["now"])


def _post(url: str, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(url + "/admin/reload", headers=headers, timeout=30)


def test_admin_routes_refuse_an_api_key_and_take_an_admin_key(model, caplog):
    version = {"now": "1"}
    app = create_app(_holder(model, version), "slm", None, ServeConfig(reload_interval_s=None), keys=KEYS)
    with BackgroundServer(app) as srv:
        url = f"http://127.0.0.1:{srv.port}"
        assert _post(url, None).status_code == 401
        refused = _post(url, "user-key-123")
        assert refused.status_code == 403 and "admin key" in refused.json()["error"]["message"]
        assert _post(url, "wrong").status_code == 401
        body = {"model": "slm", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
        chat = httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer user-key-123"})
        assert chat.status_code == 200  # the API key still works where it belongs
        version["now"] = "2"
        with caplog.at_level(logging.INFO, logger="slmops.serve.routes.admin"):
            r = _post(url, "admin-key-456")
        assert r.status_code == 200 and r.json() == {"changed": True, "version": "2", "previous": "1"}
    logged = " ".join(rec.getMessage() for rec in caplog.records)
    assert KeyRing.key_id("admin-key-456") in logged and "changed (version 2, was 1)" in logged
    assert "admin-key-456" not in logged


def test_without_admin_keys_only_loopback_may_use_admin_routes(model):
    app = create_app(_holder(model, {"now": "1"}), "slm", None, ServeConfig(reload_interval_s=None), keys=KeyRing())
    with BackgroundServer(app) as srv:  # the test client connects from 127.0.0.1
        r = _post(f"http://127.0.0.1:{srv.port}", None)
        assert r.status_code == 200 and r.json()["changed"] is False
    no_admin = KeyRing(api_keys=frozenset({"user-key-123"}))
    assert no_admin.check("/admin/reload", "user-key-123", "10.1.2.3")[0] == 403
    assert no_admin.check("/admin/reload", "", "192.168.0.9")[0] == 403
    assert no_admin.check("/admin/reload", "", "::1") == "loopback"
    assert no_admin.check("/v1/models", "user-key-123", "10.1.2.3") == KeyRing.key_id("user-key-123")
    assert no_admin.check("/health", "", "10.1.2.3") == "anonymous"


def test_keys_come_from_env(monkeypatch):
    monkeypatch.setenv("SLMOPS_API_KEYS", " a , b ,")
    monkeypatch.setenv("SLMOPS_ADMIN_KEYS", "root")
    assert KeyRing.from_env() == KeyRing(frozenset({"a", "b"}), frozenset({"root"}))
