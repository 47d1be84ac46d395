"""A team's own project, as a user builds one: `slmops init` (blank), their own task spec, data files and a
callable teacher module in the project folder, run from that folder. No code of slmops names the task."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import slmops

TEACHER = '''\
"""The team's existing rules, exposed as a callable teacher: messages in, the task's JSON out."""
import json

COMPLAINTS = ("壊れ", "遅い", "返金", "ひどい")


def answer(messages):
    text = messages[-1]["content"]
    if any(word in text for word in COMPLAINTS):
        label = "complaint"
    elif text.endswith(("か", "?", "？")):
        label = "question"
    else:
        label = "other"
    return json.dumps({"label": label}, ensure_ascii=False)
'''
SUBJECTS = ["注文", "配送", "請求", "アカウント", "商品", "返品", "パスワード", "予約"]
KINDS = {
    "complaint": ["{s}が壊れていました", "{s}の対応が遅いです", "{s}を返金してほしい", "{s}の件はひどい"],
    "question": ["{s}はいつ届きますか", "{s}を変更できますか", "{s}の確認方法は?", "{s}はどこで見られますか"],
    "other": ["{s}の件、ありがとうございました", "{s}について連絡しました", "{s}は了解です", "{s}の資料を送ります"],
}


def _rows(rng: random.Random, n: int, offset: int) -> list[dict]:
    rows = []
    for i in range(n):
        label = rng.choice(sorted(KINDS))
        text = rng.choice(KINDS[label]).format(s=rng.choice(SUBJECTS)) + f"(番号{offset + i})"
        rows.append({"input": text, "label": label})
    return rows


def _write_project(root: Path, base_model: Path) -> None:
    rng = random.Random(0)
    (root / "data").mkdir(exist_ok=True)
    for name, rows in (("labelled", _rows(rng, 60, 0)), ("unlabelled", _rows(rng, 60, 1000))):
        lines = [json.dumps(r if name == "labelled" else {"input": r["input"]}, ensure_ascii=False) for r in rows]
        (root / "data" / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "my_teacher.py").write_text(TEACHER, encoding="utf-8")
    params = yaml.safe_load((root / "slmops.yaml").read_text(encoding="utf-8"))
    params |= {
        "project": {"offline": True},
        "synthesize": {"teacher": {"kind": "callable", "target": "my_teacher:answer"}, "max_reject_rate": 1.0},
        "finetune": {"base_model": str(base_model), "method": "lora", "training": {"max_length": 96}},
        "evaluate": {"max_new_tokens": 16, "max_examples": 12},
        "dvc": {"commit": True},
    }
    (root / "slmops.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")


def test_a_project_of_your_own_runs_from_its_folder_and_dvc_is_clean_after(smoke_run, tmp_path):
    root = tmp_path / "our-project"
    slmops("init", str(root), cwd=tmp_path)
    _write_project(root, smoke_run["work"] / "models" / "student_base")  # a small local base, as a user's folder
    # Prefect's embedded default, as on a laptop: no server named, so the run starts a temporary one of its own.
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns.db'}", "PREFECT_API_URL": None}
    (root / "data" / "sub").mkdir()
    proc = slmops("run", cwd=root / "data" / "sub", env=env)  # found by walking up
    assert "task my_task" in proc.stdout and "poc gate:" in proc.stdout

    trained = [json.loads(line) for line in open(root / "data" / "synthetic" / "train.jsonl", encoding="utf-8")]
    by_teacher = [r for r in trained if r["source"] == "teacher_label"]
    assert by_teacher and all(r["provenance"]["teacher_id"] == "callable:my_teacher:answer" for r in by_teacher)
    finetuned = json.loads((root / "models" / "student" / "manifest.json").read_text())
    assert finetuned["result"]["epochs_reason"]  # epochs: auto chose the epochs for 60 + 60 rows, and said why

    dvc = str(Path(sys.executable).with_name("dvc"))
    status = subprocess.run(
        [dvc, "status"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]},
    )
    assert status.returncode == 0 and "up to date" in status.stdout.lower(), status.stdout + status.stderr

    # The team's teacher module is part of the code of the stages that call it, and of no other.
    before = yaml.safe_load((root / "params.yaml").read_text())["code"]
    with open(root / "my_teacher.py", "a", encoding="utf-8") as fh:
        fh.write("# a rule changed\n")
    slmops("dvc", cwd=root)
    after = yaml.safe_load((root / "params.yaml").read_text())["code"]
    assert {s for s in before if before[s] != after[s]} == {"label_traffic", "synthesize", "evaluate"}
