"""The registered MLflow model is portable: it carries its inference code, its task prompt, a signature and
an input example, needs only installable packages, and answers like the server does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from slmops.inference.chat_model import ChatModel
from slmops.registry import aliases as registry
from slmops.tasks import load_task
from tests.conftest import tracking_store
from tests.projects import TRIAGE

TASK = load_task("ticket_triage", TRIAGE)
TEXTS = ["注文した商品がまだ届きません", "パスワードを忘れました"]


@pytest.fixture(scope="module")
def registered(tiny_models, tmp_path_factory):
    """``tiny@poc`` in a fresh SQLite tracking store: (tracking URI, model URI)."""
    import mlflow

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    with tracking_store(uri):
        experiment = mlflow.create_experiment("portable", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            version = registry.register(tiny_models["onnx"], "tiny", {"accuracy": 0.5}, task=TASK)
        registry.set_alias("tiny", "poc", version)
        yield uri, "models:/tiny@poc"


def test_the_registered_model_is_self_describing_and_answers_like_the_server(registered, tiny_models):
    import mlflow

    uri, model_uri = registered
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(model_uri)
    assert model.metadata.signature is not None and model.metadata.get_input_schema() is not None
    local = mlflow.artifacts.download_artifacts(model_uri)
    requirements = (os.path.join(local, "requirements.txt"), os.path.join(local, "input_example.json"))
    text = open(requirements[0]).read()
    assert "slmops" not in text and "onnxruntime==" in text and "torch" not in text
    assert os.path.exists(requirements[1])
    spec = json.loads(open(os.path.join(local, "artifacts", "task.json")).read())
    assert spec["messages"] == TASK.build_messages("{text}")
    served = ChatModel.load(tiny_models["onnx"])
    expected = [served.chat(TASK.build_messages(t), max_tokens=12).text for t in TEXTS]
    assert model.predict(TEXTS, params={"max_tokens": 12}) == expected


LOAD_AND_ANSWER = textwrap.dedent(
    """
    import sys, mlflow
    mlflow.set_tracking_uri(sys.argv[1])
    print(mlflow.pyfunc.load_model(sys.argv[2]).predict(["注文した商品がまだ届きません"], params={"max_tokens": 8}))
    """
)


@pytest.mark.slow
def test_the_registered_model_loads_and_serves_in_a_clean_venv(registered, tmp_path):
    """A venv with nothing but the model's requirements.txt (from PyPI or the pip cache): no slmops, no torch."""
    import mlflow

    uri, model_uri = registered
    mlflow.set_tracking_uri(uri)
    requirements = os.path.join(mlflow.artifacts.download_artifacts(model_uri), "requirements.txt")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # --no-compile, and bytecode writing on: the three commands below compile what they import, once.
    pip = [python, "-m", "pip", "install", "-q", "--no-compile", "-r", requirements]
    subprocess.run(pip, check=True, timeout=900)
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    clean_env = {k: v for k, v in os.environ.items() if k not in drop}
    check = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('slmops'), u.find_spec('torch'))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env,
        check=True,
    )
    assert check.stdout.split() == ["None", "None"]  # nothing of this repo and no torch in that venv
    answer = subprocess.run(
        [python, "-c", LOAD_AND_ANSWER, uri, model_uri],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env,
        timeout=300,
    )
    assert answer.returncode == 0, answer.stderr[-3000:]
    assert answer.stdout.startswith("[")
    _serve_and_ask(venv, uri, model_uri, tmp_path, clean_env)


def _serve_and_ask(venv, uri: str, model_uri: str, cwd, env: dict) -> None:
    """``mlflow models serve`` from that venv (activated: its uvicorn on PATH) answers ``/invocations``."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(venv / "bin" / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=cwd, env={**env, "MLFLOW_TRACKING_URI": uri, "PATH": f"{venv / 'bin'}:{env['PATH']}"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": TEXTS[:1]}, timeout=60)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "mlflow models serve never answered"
                time.sleep(0.5)  # polling interval while the server starts
        assert r.status_code == 200, r.text
        assert len(r.json()["predictions"]) == 1
    finally:
        server.terminate()
        server.wait(timeout=30)
