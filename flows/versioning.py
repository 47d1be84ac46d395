"""Data and model versioning with DVC: after a run in the repo, record outputs in dvc.lock and push them.

The flow and ``dvc repro`` run the same commands into the same paths, so ``dvc commit`` after ``slmops run``
leaves ``dvc repro`` with nothing to do, and ``dvc.lock`` (logged to MLflow) names the exact data version.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def dvc_commit_and_push(work_dir: Path) -> Path | None:
    """Return the updated ``dvc.lock``, or None when ``work_dir`` is not the DVC project (tests, other dirs)."""
    if not (work_dir / "dvc.yaml").exists() or not (work_dir / ".dvc").is_dir():
        return None
    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    for args in (["commit", "--force", "--quiet"], ["push", "--quiet"]):
        subprocess.run([dvc, *args], cwd=work_dir, check=True)
    return work_dir / "dvc.lock"
