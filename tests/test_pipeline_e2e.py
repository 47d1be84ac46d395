"""End to end on the smoke profile: raw data -> served model answering HTTP; registry moves; caching; CLI.

One pipeline run (the session fixture ``smoke_run``) feeds every test here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from slmops.config import load_gates
from slmops.flows.stages import DEMO, PIPELINE
from slmops.io import load_jsonl
from tests.conftest import free_port, slmops, tracking_store
from tests.projects import REVIEWS_SMOKE_GATES, TRIAGE, TRIAGE_GATES

pytestmark = pytest.mark.slow


def test_pipeline_runs_every_stage_and_registers_poc(smoke_run):
    work = smoke_run["work"]
    out = smoke_run["stdout"]
    assert "poc gate:   passed" in out, out
    for path in (
        "data/prepared/train.jsonl",
        "data/synthetic/train.jsonl",
        "models/student/model.safetensors",
        "models/student/adapter/adapter_config.json",
        "models/student_onnx/int8/model.onnx",
        "reports/eval/metrics.json",
        "reports/eval/comparison.csv",
    ):
        assert (work / path).exists(), path
    metrics = json.loads((work / "reports/eval/metrics.json").read_text())
    assert set(metrics) == {"teacher", "student", "student_int8"}
    assert metrics["student_int8"]["size_mb"] < metrics["student"]["size_mb"]
    manifest = json.loads((work / "data/synthetic/manifest.json").read_text())
    assert manifest["counts"]["asked"] > 0 and "rejected" in manifest


def test_mlflow_has_a_parent_run_with_nested_stage_runs_and_a_comparison_table(smoke_run):
    import mlflow

    mlflow.set_tracking_uri(smoke_run["env"]["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(search_all_experiments=True)
    parents = runs[runs["tags.mlflow.runName"] == "pipeline-smoke"]
    assert len(parents) >= 1
    parent_id = parents.iloc[0]["run_id"]
    children = set(runs[runs["tags.mlflow.parentRunId"] == parent_id]["tags.mlflow.runName"])
    assert {"prepare", "synthesize", "finetune", "quantize", "evaluate"} <= children
    assert "metrics.student_int8.category_accuracy" in runs.columns
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent_id, "eval")}
    assert "eval/comparison.json" in artifacts
    assert not any("sk-" in str(v) for v in parents.iloc[0].to_dict().values())  # no secret in params


def _stage_lines(stdout: str) -> dict[str, str]:
    """``{stage: "ran" | "cached"}`` from the one line each stage prints."""
    from slmops.flows.stages import STAGES

    found = {}
    for line in stdout.splitlines():
        words = line.replace("\r", " ").split()
        for i, word in enumerate(words[:-1]):
            if word in STAGES and words[i + 1] in ("ran", "cached"):
                found[word] = words[i + 1]
    return found


def test_every_stage_prints_one_line_and_no_library_noise(smoke_run):
    out = smoke_run["build_stdout"] + smoke_run["stdout"]
    assert _stage_lines(out) == dict.fromkeys([s.name for s in DEMO + PIPELINE], "ran")
    for noise in ("{'loss'", "{'train_runtime'", "TracerWarning", "WARNING", "Map:", "Created version"):
        assert noise not in out, noise
    assert (smoke_run["work"] / "logs" / "slmops.log").stat().st_size > 0  # the full log went to a file


def test_rerun_with_nothing_changed_recomputes_nothing(smoke_run):
    from slmops.config import load_params
    from slmops.registry import aliases as registry

    name = load_params("smoke", project=TRIAGE).model_name
    before = registry.alias_version(name, "poc")
    proc = slmops("run", "--profile", "smoke", "--project", str(smoke_run["work"]), env=smoke_run["env"])
    lines = _stage_lines(proc.stdout)
    assert set(lines.values()) == {"cached"} and set(lines) == {s.name for s in PIPELINE}, proc.stdout
    # The same model is not registered again: poc keeps its version.
    assert f"version {before} already holds poc" in proc.stdout and registry.alias_version(name, "poc") == before


def test_a_corrupted_served_model_is_rebuilt_not_trusted(smoke_run):
    weights = smoke_run["work"] / "models" / "student_onnx" / "int8" / "model.onnx"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)  # zero the last bytes, as a bad disk or a stray process would
    weights.write_bytes(bytes(data))
    proc = slmops("run", "--profile", "smoke", "--project", str(smoke_run["work"]), env=smoke_run["env"])
    lines = _stage_lines(proc.stdout)
    assert lines["quantize"] == "ran" and "outputs changed since cached (int8/model.onnx)" in proc.stdout
    assert lines["finetune"] == lines["synthesize"] == "cached"
    assert weights.read_bytes() != bytes(data)  # rewritten by the rerun


def test_the_second_task_runs_from_a_spec_and_data_alone(reviews_run):
    import mlflow

    out = reviews_run["stdout"]
    assert "poc gate:   passed" in out, out
    for column in ("rating_accuracy", "rating_mae", "aspects_micro_f1", "summary_chrf", "exact_match"):
        assert column in out  # the console table
    with tracking_store(reviews_run["env"]["MLFLOW_TRACKING_URI"]):  # then back: other tests read the smoke run's
        runs = mlflow.search_runs(search_all_experiments=True)
    parent = runs[runs["tags.mlflow.runName"] == "pipeline-smoke"].iloc[0]
    assert parent["tags.task"] == "review_insights" and parent["metrics.student_int8.aspects_micro_f1"] >= 0
    # quantize.candidates [int8, int4]: both evaluated and parity-checked (against ONNX fp32, and through their own
    # server) in the same run; the smallest one that passes the gate and its own parity is registered.
    assert parent["metrics.student_int4.size_mb"] < parent["metrics.student_int8.size_mb"]
    limits = load_gates(REVIEWS_SMOKE_GATES).parity  # the gates the smoke profile names
    faithful = {
        form: parent[f"metrics.parity.{form}.output_agreement"] >= limits.min_output_agreement
        and parent[f"metrics.parity.{form}.label_agreement"] >= limits.min_label_agreement
        for form in ("int8", "int4")
    }
    assert faithful["int8"] and parent["tags.served_form"] == ("int4" if faithful["int4"] else "int8"), faithful
    assert (
        parent["metrics.parity.served_int8.output_agreement"]
        == parent["metrics.parity.served_int4.output_agreement"]
        == 1
    )
    synthetic = load_jsonl(reviews_run["work"] / "data" / "synthetic" / "train.jsonl")
    assert {r["source"] for r in synthetic} == {"gold", "teacher_label"}
    assert all(set(r["expected"]) == {"rating", "aspects", "summary"} for r in synthetic)


def test_served_poc_model_answers_http_and_logs_the_request(smoke_run):
    work, port = smoke_run["work"], free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "slmops")
    server = subprocess.Popen(
        [exe, "serve", "--alias", "poc", "--port", str(port), "--profile", "smoke", "--project", str(work)],
        env={**os.environ, **smoke_run["env"]},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.5)
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            timeout=60,
            json={
                "model": "ticket-triage-slm",
                "messages": [{"role": "user", "content": "荷物が届きません。"}],
                "max_tokens": 16,
            },
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None
        assert load_jsonl(work / "logs" / "inference.jsonl")[-1]["input"] == "荷物が届きません。"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_evaluate_cli_prints_metrics_as_the_last_line(smoke_run, tmp_path):
    data = tmp_path / "eval.jsonl"
    data.write_text(
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {"input": "請求が二重です", "expected": {"category": "billing", "priority": "high"}},
                {
                    "input": "ログインできません",
                    "expected": {"category": "account", "priority": "medium", "reply": "確認します。"},
                },
                "broken",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    proc = slmops(
        "evaluate",
        "--model",
        "poc",
        "--data",
        str(data),
        "--profile",
        "smoke",
        "--project",
        str(smoke_run["work"]),
        env=smoke_run["env"],
    )
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert metrics["n"] == 2 and {"category_accuracy", "priority_accuracy", "json_valid_rate"} <= set(metrics)
    assert "line 3" in proc.stderr or ":3:" in proc.stderr


def _register_copy(smoke_run, metrics=None) -> str:
    """Register the smoke int8 model again as a new version (a stand-in for a later retraining run)."""
    import mlflow

    from slmops.config import load_params
    from slmops.flows.runtime import tracking
    from slmops.registry import aliases as registry
    from slmops.tasks import load_task

    work = smoke_run["work"]
    mlflow.set_tracking_uri(smoke_run["env"]["MLFLOW_TRACKING_URI"])
    tracking(work, load_params("smoke", project=TRIAGE).project.experiment)
    params = load_params("smoke", project=TRIAGE)
    with mlflow.start_run(run_name="test-register"):
        return registry.register(
            work / "models/student_onnx/int8",
            params.model_name,
            metrics or {"category_accuracy": 0.1},
            load_task(params.task, TRIAGE),
        )


def test_promotion_is_gated_and_rollback_restores_the_previous_holder(smoke_run):
    from slmops.config import load_params
    from slmops.registry import aliases as registry

    work, env = smoke_run["work"], smoke_run["env"]
    name = load_params("smoke", project=TRIAGE).model_name
    failed = slmops("promote", "--to", "prod", "--profile", "smoke", "--project", str(work), env=env, check=False)
    assert failed.returncode == 1 and "no version holds 'pilot'" in failed.stdout

    # The smoke model is far too weak for the pilot gates: the promotion fails and changes nothing.
    pilot = slmops("promote", "--to", "pilot", "--profile", "smoke", "--project", str(work), env=env, check=False)
    decision = json.loads(pilot.stdout)
    assert pilot.returncode == 1 and decision["reasons"] and decision["candidate_metrics"]
    assert registry.alias_version(name, "pilot") is None
    version = registry._client().get_model_version(name, decision["candidate"])
    assert version.tags["gate.pilot"] == "failed" and version.tags["gate.pilot.reasons"]
    [record] = registry._client().list_artifacts(version.run_id, "promotion")
    assert record.path.startswith("promotion/pilot-")

    first = registry.alias_version(name, "poc")
    second = _register_copy(smoke_run)
    registry.set_alias(name, "poc", second)
    history = slmops("history", "--stage", "poc", "--profile", "smoke", "--project", str(work), env=env)
    assert f"version {first}" in history.stdout and f"version {second}" in history.stdout
    back = slmops("rollback", "--stage", "poc", "--profile", "smoke", "--project", str(work), env=env)
    assert f"-> version {first}" in back.stdout
    assert registry.alias_version(name, "poc") == first


def test_a_tampered_artifact_is_refused_at_load(smoke_run):
    from slmops.config import load_params
    from slmops.registry import aliases as registry

    name = load_params("smoke", project=TRIAGE).model_name
    version = _register_copy(smoke_run)
    registry.set_alias(name, "tampered", version)
    _, loaded = registry.load_chat_model(name, "tampered")  # intact: loads
    assert loaded == version
    _tamper(name, version)
    with pytest.raises(ValueError, match="refusing to load"):
        registry.load_chat_model(name, "tampered")


def _tamper(name: str, version: str) -> None:
    """Change one byte of a registered version's stored ONNX file, behind the registry's back."""
    from urllib.parse import urlparse

    import mlflow

    from slmops.registry import aliases as registry

    source = registry._client().get_model_version(name, version).source  # models:/m-<logged model id>
    stored = Path(urlparse(mlflow.get_logged_model(source.removeprefix("models:/")).artifact_location).path)
    onnx = next(stored.rglob("model.onnx"))
    onnx.write_bytes(onnx.read_bytes() + b"\0")


def test_the_server_follows_the_alias_and_refuses_a_tampered_holder(smoke_run):
    from slmops.config import ServeConfig, load_params
    from slmops.registry import aliases as registry
    from slmops.serve.app import BackgroundServer, create_app
    from slmops.serve.reload import ModelHolder, ServedModel

    name = load_params("smoke", project=TRIAGE).model_name
    registry.set_alias(name, "live", _register_copy(smoke_run))
    holder = ModelHolder(
        ServedModel(*registry.load_chat_model(name, "live")),
        loader=lambda: registry.load_chat_model(name, "live"),
        probe=lambda: registry.alias_version(name, "live"),
    )
    body = {"model": name, "messages": [{"role": "user", "content": "請求の件"}], "max_tokens": 8}
    with BackgroundServer(create_app(holder, name, None, ServeConfig(reload_interval_s=None))) as srv:
        url = f"http://127.0.0.1:{srv.port}"
        newer = _register_copy(smoke_run)
        registry.set_alias(name, "live", newer)  # e.g. `slmops promote` moved it
        assert httpx.post(url + "/admin/reload", timeout=120).json()["version"] == newer
        assert (
            httpx.post(url + "/v1/chat/completions", json=body, timeout=60).headers["x-slmops-model-version"] == newer
        )

        tampered = _register_copy(smoke_run)
        _tamper(name, tampered)
        registry.set_alias(name, "live", tampered)
        refused = httpx.post(url + "/admin/reload", timeout=120)
        assert refused.status_code == 409 and "refusing to load" in refused.json()["error"]["message"]
        answer = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
        assert answer.status_code == 200 and answer.headers["x-slmops-model-version"] == newer


def test_rollback_waits_for_a_promotion_in_progress(smoke_run):
    import threading

    from slmops.config import Layout, load_params
    from slmops.flows.promote import promotion_lock, rollback
    from slmops.registry import aliases as registry

    params, work = load_params("smoke", project=TRIAGE), smoke_run["work"]
    name = params.model_name
    first = _register_copy(smoke_run)
    registry.set_alias(name, "canary", first)
    registry.set_alias(name, "canary", _register_copy(smoke_run))
    done: list[str] = []
    with promotion_lock(Layout(root=work.resolve()).state / "promotion.lock"):  # a promotion is deciding
        worker = threading.Thread(target=lambda: done.append(rollback(params, work, "canary")))
        worker.start()
        worker.join(timeout=2)
        assert worker.is_alive() and not done  # blocked on the lock
    worker.join(timeout=60)
    assert done == [first] and registry.alias_version(name, "canary") == first


def _loose_gates(tmp_path) -> Path:
    import yaml

    gates = load_gates(TRIAGE_GATES).model_dump()
    gates = {
        stage: {**rules, "min": dict.fromkeys(rules["min"], 0.0), "max": dict.fromkeys(rules["max"], 1e9)}
        for stage, rules in gates.items()
        if stage != "parity"
    }
    path = tmp_path / "gates.yaml"
    path.write_text(yaml.safe_dump(gates))
    return path


def test_a_passing_promotion_moves_the_alias_and_records_both_models(smoke_run, tmp_path, monkeypatch):
    from slmops.config import load_params
    from slmops.flows.promote import promote
    from slmops.registry import aliases as registry

    params, work = load_params("smoke", project=TRIAGE), smoke_run["work"]
    name = params.model_name
    candidate = registry.alias_version(name, "poc")
    result = promote(params, work, "pilot", gates=_loose_gates(tmp_path))
    assert result["passed"] and registry.alias_version(name, "pilot") == candidate
    assert registry._client().get_model_version(name, candidate).tags["gate.pilot"] == "passed"

    # Another promotion moves the alias while this one decides: it must fail and leave the alias alone.
    newer = _register_copy(smoke_run, registry.version_metrics(name, candidate))  # would pass on its own
    registry.set_alias(name, "poc", newer)
    real = registry.alias_version
    reads = {"pilot": 0}

    def racing(model: str, alias: str):
        if alias == "pilot":
            reads["pilot"] += 1
            if reads["pilot"] == 2:  # the re-read just before the move sees someone else's version
                registry.set_alias(name, "pilot", candidate, note="concurrent promotion")
                return "someone-else"
        return real(model, alias)

    monkeypatch.setattr(registry, "alias_version", racing)
    raced = promote(params, work, "pilot", gates=_loose_gates(tmp_path))
    monkeypatch.undo()
    assert not raced["passed"] and "moved while" in raced["reasons"][0]
    assert registry.alias_version(name, "pilot") == candidate  # not the newer, undecided version
