"""The wheel a team installs holds everything a project needs: code, example templates, no repository paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_the_wheel_alone_inits_and_loads_a_project(tmp_path):
    dist, site = tmp_path / "dist", tmp_path / "site"
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(dist),
        str(REPO),
    ]
    subprocess.run(build, check=True, capture_output=True, timeout=600)
    wheel = next(dist.glob("slmops-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}  # the wheel's copy, not the editable source tree
    script = (
        "import sys, slmops; from slmops.cli import app; print(slmops.__file__, file=sys.stderr); "
        "sys.argv = ['slmops'] + sys.argv[1:]; app()"
    )

    def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc

    made = cli("init", "proj", "--example", "review_insights", cwd=tmp_path)
    assert str(site) in made.stderr.splitlines()[0]  # imported from the installed wheel
    shown = cli("params", "--profile", "smoke", cwd=tmp_path / "proj" / "tasks")  # found from a subfolder
    assert "task: review_insights" in shown.stdout and "n_pool: 60" in shown.stdout
    assert (tmp_path / "proj" / "dvc.yaml").exists() and (tmp_path / "proj" / ".dvc").is_dir()
