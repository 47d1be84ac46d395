"""One declaration per stage: dvc.yaml agrees with it, params invalidate exactly their stages, cached = intact."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from slmops.config import load_params
from slmops.flows.runner import cache_key, run_stage
from slmops.flows.stages import DEMO, PIPELINE, STAGES, Ctx
from slmops.flows.versioning import dvc_stages
from tests.projects import REVIEWS, TRIAGE


def test_init_writes_the_dvc_yaml_and_params_yaml_the_registry_generates(tmp_path):
    from slmops.flows.versioning import code_hashes
    from tests.conftest import new_project

    root = new_project(tmp_path, "ticket_triage")
    params = load_params(project=root)  # the default profile, demo
    assert yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")) == dvc_stages(params, root)
    written = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    assert written == params.model_dump(mode="json") | {"code": code_hashes(params, root)}
    assert len(set(written["code"].values())) == len(DEMO + PIPELINE)  # each stage runs different code


def test_a_stages_code_is_the_import_closure_of_its_modules():
    """The helpers the issue found missing from hand-kept lists are in the computed closure."""
    from slmops.flows.codedeps import PACKAGE_DIR, closure
    from slmops.flows.stages import code_modules

    ctx = Ctx(load_params("smoke", project=TRIAGE), TRIAGE)

    def files(stage: str) -> set[str]:
        return {f.relative_to(PACKAGE_DIR).as_posix() for f in closure(code_modules(STAGES[stage], ctx))}

    assert {"loop/harvest.py", "loop/logtail.py", "text/similarity.py", "inference/chat_model.py"} <= files(
        "label_traffic"
    )
    assert "text/dedup.py" in files("synthesize") and "progress.py" in files("finetune")
    assert {"registry/gates.py", "text/pii/__init__.py"} <= files("parity")
    assert not any(f.startswith(("serve/", "train/")) for f in files("prepare"))


def _project(example_root: Path, tmp_path: Path) -> Path:
    """A copy of an example project to run stages in (they write below it)."""
    return shutil.copytree(example_root, tmp_path / example_root.name)


def _keys(params, root: Path) -> dict[str, str]:
    ctx = Ctx(params, root)
    return {s.name: cache_key(s, ctx) for s in DEMO + PIPELINE}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("project.seed=7", {"demo_data", "demo_student_base", "prepare", "synthesize", "finetune"}),
        ("evaluate.max_new_tokens=32", {"evaluate", "parity"}),  # parity answers with the same budget
        ("finetune.training.epochs=1", {"finetune"}),
        ("synthesize.teacher.model=other", {"label_traffic", "synthesize", "evaluate"}),
        ("quantize.weight_type=uint8", {"quantize", "evaluate", "parity"}),  # both read the form that is served
        ("demo.vocab_size=600", {"demo_tokenizer"}),
        ("data.test_fraction=0.2", {"prepare"}),
        ("active.budget=7", set()),  # no active rounds (rounds: 0): no stage reads the rest of the section
        ("active.rounds=1", {"finetune"}),
    ],
)
def test_a_param_change_invalidates_exactly_the_stages_that_read_it(tmp_path, override, expected):
    """Downstream stages then rerun because their inputs' content hashes change (not checked here)."""
    root = _project(TRIAGE, tmp_path)
    before = _keys(load_params("smoke", project=root), root)
    after = _keys(load_params("smoke", project=root, overrides=[override]), root)
    assert {name for name in before if before[name] != after[name]} == expected


def test_a_stage_reports_cached_only_while_its_outputs_are_intact(tmp_path, capsys):
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    tmp_path = _project(REVIEWS, tmp_path)
    ctx = Ctx(load_params("smoke", project=tmp_path), tmp_path)
    run_stage(STAGES["demo_data"], ctx, track=False)
    first = run_stage(STAGES["prepare"], ctx, track=False)
    assert run_stage(STAGES["prepare"], ctx, track=False) == first
    assert "prepare            cached" in capsys.readouterr().out

    train = tmp_path / "data" / "prepared" / "train.jsonl"
    intact = train.read_bytes()
    train.write_bytes(intact[:-20] + b"corrupted by a test\n")
    assert run_stage(STAGES["prepare"], ctx, track=False) == first
    line = capsys.readouterr().out
    assert "prepare            ran" in line and "outputs changed since cached (train.jsonl)" in line
    assert train.read_bytes() == intact  # recomputed, not trusted


def test_a_rerun_that_writes_the_same_outputs_leaves_the_folder_dvc_hashes_unchanged(tmp_path):
    """The output folder's manifest says what the outputs are, not how long this execution took: a stage run again
    (here: its cache key forgotten) that writes the same files leaves the folder byte for byte as it was, so DVC
    reruns nothing after it. The execution's own figures go to the run state."""
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    tmp_path = _project(REVIEWS, tmp_path)
    ctx = Ctx(load_params("smoke", project=tmp_path), tmp_path)
    run_stage(STAGES["demo_data"], ctx, track=False)
    run_stage(STAGES["prepare"], ctx, track=False)
    out = STAGES["prepare"].out(ctx)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    execution = json.loads((ctx.layout.stage_runs / "prepare.json").read_text())
    assert execution["execution"]["seconds"] >= 0 and "seconds" not in json.loads(before["manifest.json"])
    manifest = json.loads(before["manifest.json"])
    (out / "manifest.json").write_text(json.dumps({**manifest, "cache_key": "forgotten"}))
    time.sleep(1.1)  # a later second, as a real rerun would be
    run_stage(STAGES["prepare"], ctx, track=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow
def test_dvc_tracks_what_slmops_run_built_and_reruns_exactly_the_stale_stages(reviews_run, tmp_path):
    """The second task's smoke run, copied with the slmops code (so a test may edit it), under DVC: `dvc commit`
    of what `slmops run` built leaves `dvc status` clean, each stage's own command run again by `dvc repro`
    writes the same outputs, and an edit, a param or new traffic makes exactly the stages that read it stale."""
    code = tmp_path / "code"
    shutil.copytree(
        Path(__import__("slmops").__file__).parent, code / "slmops", ignore=shutil.ignore_patterns("__pycache__")
    )
    tmp_path = shutil.copytree(reviews_run["work"], tmp_path / "project", symlinks=True)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(code)}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlruns-dvc.db'}"  # not the copied run's store

    def run(*cmd: str) -> str:
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        return proc.stdout + proc.stderr

    def stale() -> set[str]:
        status = run(str(bin_dir / "dvc"), "status")
        return {s.name for s in DEMO + PIPELINE if f"{s.name}:" in status}

    run(str(bin_dir / "slmops"), "dvc", "--profile", "smoke")  # the same code hashes from the copied code
    assert stale() == {s.name for s in DEMO + PIPELINE}  # nothing recorded in dvc.lock yet
    run(str(bin_dir / "dvc"), "commit", "--force")
    assert "up to date" in run(str(bin_dir / "dvc"), "status").lower()
    # A stage's own command, run again by DVC, writes byte for byte what `slmops run` wrote.
    for stage in ("demo_data", "prepare", "harvest"):
        out = run(str(bin_dir / "dvc"), "repro", "--force", "--single-item", stage)
        assert f"Running stage '{stage}'" in out, out[-3000:]
    assert "up to date" in run(str(bin_dir / "dvc"), "status").lower()
    assert (tmp_path / "reports" / "eval" / "metrics.json").exists()

    # A helper that harvest imports (and label_traffic, through harvest) is edited: exactly those two are stale,
    # and `dvc repro` reruns them and nothing else (their outputs are the same, so nothing after them reruns).
    helper = code / "slmops" / "loop" / "logtail.py"
    helper.write_text(helper.read_text() + "\n# a fix in a helper\n")
    run(str(bin_dir / "slmops"), "dvc", "--profile", "smoke")
    assert stale() == {"harvest", "label_traffic"}
    out = run(str(bin_dir / "dvc"), "repro")
    ran = {s.name for s in DEMO + PIPELINE if f"Running stage '{s.name}'" in out}
    assert ran == {"harvest", "label_traffic"}, out[-3000:]

    resolved = yaml.safe_load((tmp_path / "params.yaml").read_text())
    resolved["evaluate"]["max_new_tokens"] = 32
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(resolved, allow_unicode=True))
    status = run(str(bin_dir / "dvc"), "status")
    changed = {s.name for s in DEMO + PIPELINE if f"{s.name}:" in status}
    assert changed == {"evaluate", "parity"}, status

    # The loop's lineage: logged traffic -> harvest -> label_traffic -> synthesize; new traffic invalidates harvest.
    dag = run(str(bin_dir / "dvc"), "dag", "--dot")
    for edge in ('"harvest" -> "label_traffic"', '"label_traffic" -> "synthesize"', '"prepare" -> "harvest"'):
        assert edge in dag, dag
    run(str(bin_dir / "slmops"), "dvc", "--profile", "smoke")
    run("git", "add", "-A")
    run("git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-qm", "baseline")
    _log_traffic(tmp_path / "logs" / "inference.jsonl", 30)
    status = run(str(bin_dir / "dvc"), "status")
    assert {s.name for s in DEMO + PIPELINE if f"{s.name}:" in status} == {"harvest"}, status

    # One experiment (the new traffic plus a finetune key) reruns harvest through parity, never prepare; the
    # traffic reaches the training file, and `dvc exp show` compares the result with the committed champion.
    out = run(str(bin_dir / "dvc"), "exp", "run", "-n", "two-epochs", "-S", "finetune.training.epochs=2")
    for stage in ("harvest", "label_traffic", "synthesize", "finetune", "evaluate"):
        assert f"Running stage '{stage}'" in out, out[-3000:]
    assert "Running stage 'prepare'" not in out, out[-3000:]
    trained_on = [json.loads(line) for line in open(tmp_path / "data" / "synthetic" / "train.jsonl")]
    assert any(r["source"] == "traffic" for r in trained_on)
    show = run(str(bin_dir / "dvc"), "exp", "show", "--csv")
    assert "two-epochs" in show and "student_int8.json_valid_rate" in show
    rows = list(csv.DictReader(io.StringIO(show)))
    # The committed baseline (the champion's run; `dvc exp run` applies the experiment to the workspace row).
    champion = next(r for r in rows if r["Experiment"] == "" and r["rev"] != "workspace")
    experiment = next(r for r in rows if r["Experiment"] == "two-epochs")
    metrics = [k for k in champion if k.startswith("student_int8.") and "latency" not in k]
    assert any(champion[k] != experiment[k] for k in metrics), (champion, experiment)  # the result changed


def _log_traffic(log: Path, n: int) -> None:
    """``n`` answered rows in the inference log, as the server writes them (review texts the data never had)."""
    from slmops.demo.reviews import generate

    rows = generate(99, 0, 0, n)["test"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as fh:
        for i, row in enumerate(rows):
            record = {"id": f"chatcmpl-{i:04d}", "ts": f"2026-11-25T10:{i // 60:02d}:{i % 60:02d}.000+00:00"}
            record |= {"status": 200, "served_by": "student", "input": row["review"], "output": "{}"}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def test_stage_takes_set_overrides_for_one_run_and_names_a_bad_key(tmp_path):
    from tests.conftest import new_project, slmops

    root = new_project(tmp_path, "ticket_triage")
    slmops("stage", "demo_data", "--profile", "smoke", "--set", "demo.n_test=7", "--project", str(root))
    assert len((root / "data/raw/test.jsonl").read_text().splitlines()) == 7
    slmops("stage", "demo_data", "--profile", "smoke", "--project", str(root))  # the profile's own size again
    assert (
        len((root / "data/raw/test.jsonl").read_text().splitlines()) == load_params("smoke", project=root).demo.n_test
    )
    bad = slmops("stage", "demo_data", "--set", "demo.n_tset=7", "--project", str(root), check=False)
    assert bad.returncode == 2 and "n_tset" in bad.stderr
    params_file = root / "params.yaml"
    both = slmops(
        "stage",
        "demo_data",
        "--params-file",
        str(params_file),
        "--set",
        "demo.n_test=7",
        "--project",
        str(root),
        check=False,
    )
    assert both.returncode == 2 and "--set does not apply" in both.stderr
