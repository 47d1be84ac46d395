"""benchmarks/seed_sweep.py: what a copy keeps, the commands it runs, and the per-seed differences it reports."""

from pathlib import Path

from benchmarks.seed_sweep import copy_project, stage_command, summarise


def test_a_copy_leaves_out_the_run_history_and_the_student_and_keeps_the_rest(tmp_path):
    src = tmp_path / "project"
    for path in (
        "slmops.yaml",
        "models/student/model.safetensors",
        "models/student_base/config.json",
        "data/synthetic/train.jsonl",
        "mlartifacts/1/x",
        "dvc-remote/ab/cd",
        "logs/slmops.log",
        "reports/eval/student/x.json",
    ):
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text("x")
    copy = copy_project(src, tmp_path / "copy")
    kept = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())
    assert kept == [
        "data/synthetic/train.jsonl",
        "models/student_base/config.json",
        "reports/eval/student/x.json",
        "slmops.yaml",
    ]


def test_the_seed_comes_first_and_the_change_after_it():
    command = stage_command("finetune", Path("/p"), 7, ["finetune.lora.r=8"], "demo")
    assert command[0].endswith("slmops") and command[1:] == [
        "stage",
        "finetune",
        "--project",
        "/p",
        "--profile",
        "demo",
        "--set",
        "project.seed=7",
        "--set",
        "finetune.lora.r=8",
    ]


def test_paired_runs_report_the_difference_seed_by_seed():
    def run(arm, seed, dev, pooled):
        return {"arm": arm, "seed": seed, "accuracy": {"dev": dev, "pooled": pooled}}

    runs = [
        run("base", 42, 0.75, 0.772),
        run("change", 42, 0.75, 0.774),
        run("base", 7, 0.694, 0.726),
        run("change", 7, 0.742, 0.744),
        run("change", 1, 0.7, 0.7),
    ]
    figures = summarise(runs, ["dev"])
    assert figures["difference_seeds"] == [7, 42]  # seed 1 has no base run
    assert figures["difference"] == {"dev": [0.048, 0.0], "pooled": [0.018, 0.002]}
    assert figures["arms"]["base"]["pooled"] == {"mean": (0.772 + 0.726) / 2, "min": 0.726, "max": 0.772}
    assert figures["arms"]["change"]["dev"]["max"] == 0.75
    assert "difference" not in summarise([r for r in runs if r["arm"] == "change"], ["dev"])
