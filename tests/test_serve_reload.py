"""Switching to a new alias holder without a restart: whole models only, the old one serves until then."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from slmops.config import ServeConfig
from slmops.inference.chat_model import ChatModel
from slmops.serve.app import BackgroundServer, create_app
from slmops.serve.reload import ModelHolder, ServedModel


@pytest.fixture(scope="module")
def models(tiny_models) -> dict[str, ChatModel]:
    return {"1": ChatModel.load(tiny_models["int8"]), "2": ChatModel.load(tiny_models["model"])}


class Registry:
    """Stands in for the alias: ``holder`` says which version holds it; loading takes ``load_s`` seconds."""

    def __init__(self, models: dict[str, ChatModel], gated: bool = False):
        self.models, self.holder, self.loads, self.probes = models, "1", 0, 0
        self.broken: set[str] = set()
        self.loading = threading.Event()  # set once a load started
        self.finish = threading.Event()  # a load ends once this is set
        if not gated:
            self.finish.set()

    def probe(self) -> str:
        self.probes += 1
        return self.holder

    def load(self) -> tuple[ChatModel, str]:
        version = self.holder
        self.loads += 1
        self.loading.set()
        assert self.finish.wait(30)
        if version in self.broken:
            raise ValueError(f"v{version}: artifact sha256 mismatch; refusing to load")
        return self.models[version], version

    def app(self, cfg: ServeConfig | None = None):
        holder = ModelHolder(ServedModel(self.models["1"], "1"), loader=self.load, probe=self.probe)
        return create_app(holder, "slm", None, cfg or ServeConfig(reload_interval_s=None))


def _wait_for(condition, message: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)  # polling interval, not a wait for something to happen


def _ask(url: str) -> httpx.Response:
    body = {"model": "slm", "messages": [{"role": "user", "content": "請求の件"}], "max_tokens": 4}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)


def test_reload_switches_only_once_the_new_model_is_loaded(models):
    registry = Registry(models, gated=True)
    with BackgroundServer(registry.app()) as srv:
        url = f"http://127.0.0.1:{srv.port}"
        assert httpx.post(url + "/admin/reload", timeout=30).json() == {
            "changed": False,
            "version": "1",
            "previous": "1",
        }
        registry.holder = "2"
        reload = ThreadPoolExecutor(1).submit(lambda: httpx.post(url + "/admin/reload", timeout=30))
        assert registry.loading.wait(30)  # the new version is loading now
        during = [_ask(url) for _ in range(3)]
        assert not reload.done()
        registry.finish.set()
        assert [r.status_code for r in during] == [200] * 3
        assert {r.headers["x-slmops-model-version"] for r in during} == {"1"}  # the old model, whole
        assert reload.result().json() == {"changed": True, "version": "2", "previous": "1"}
        assert _ask(url).headers["x-slmops-model-version"] == "2"
        health = httpx.get(url + "/health").json()
        assert health["version"] == "2" and health["backend"] == "transformers" and health["reload_error"] is None
        assert 'slmops_model_info{version="2"} 1.0' in httpx.get(url + "/metrics").text


def test_a_version_that_fails_to_load_is_refused_and_the_old_one_keeps_serving(models):
    registry = Registry(models)
    with BackgroundServer(registry.app()) as srv:
        url = f"http://127.0.0.1:{srv.port}"
        registry.holder, registry.broken = "2", {"2"}
        r = httpx.post(url + "/admin/reload", timeout=30)
        assert r.status_code == 409 and "refusing to load" in r.json()["error"]["message"]
        assert _ask(url).headers["x-slmops-model-version"] == "1"
        health = httpx.get(url + "/health").json()
        assert health["version"] == "1" and "refusing to load" in health["reload_error"]
        assert 'slmops_reloads_total{outcome="failed"} 1.0' in httpx.get(url + "/metrics").text


def test_a_model_that_cannot_answer_is_never_swapped_in(models):
    class Broken:
        backend = "onnxruntime"

        def chat(self, *args, **kwargs):
            raise RuntimeError("session failed")

    holder = ModelHolder(ServedModel(models["1"], "1"), loader=lambda: (Broken(), "2"), probe=lambda: "2")
    with BackgroundServer(create_app(holder, "slm", None, ServeConfig(reload_interval_s=None))) as srv:
        url = f"http://127.0.0.1:{srv.port}"
        assert httpx.post(url + "/admin/reload", timeout=30).status_code == 409
        assert _ask(url).status_code == 200 and holder.current.version == "1"


def test_the_server_polls_the_alias_and_switches_by_itself(models):
    registry = Registry(models)
    with BackgroundServer(registry.app(ServeConfig(reload_interval_s=0.2))) as srv:
        url = f"http://127.0.0.1:{srv.port}"
        _wait_for(lambda: registry.probes >= 3, "the server never polled the alias")
        assert registry.loads == 0  # the holder did not change: nothing is downloaded again
        registry.holder = "2"
        _wait_for(lambda: httpx.get(url + "/health").json()["version"] == "2", "the server never switched")
        assert registry.loads == 1
        metrics = httpx.get(url + "/metrics").text
        assert 'slmops_model_info{version="2"} 1.0' in metrics
        assert 'slmops_reloads_total{outcome="changed"} 1.0' in metrics


def test_concurrent_reloads_load_the_new_version_once(models):
    registry = Registry(models)
    app = registry.app()
    with BackgroundServer(app) as srv:
        url = f"http://127.0.0.1:{srv.port}"
        registry.holder = "2"
        barrier = threading.Barrier(4)

        def reload():
            barrier.wait()
            return httpx.post(url + "/admin/reload", timeout=30).json()["changed"]

        with ThreadPoolExecutor(4) as pool:
            changed = list(pool.map(lambda _: reload(), range(4)))
        assert sorted(changed) == [False, False, False, True] and registry.loads == 1


def test_a_local_folder_server_says_it_cannot_reload(models):
    with BackgroundServer(create_app(models["1"], "slm", None)) as srv:
        r = httpx.post(f"http://127.0.0.1:{srv.port}/admin/reload", timeout=30)
        assert r.status_code == 409 and "local folder" in r.json()["error"]["message"]
