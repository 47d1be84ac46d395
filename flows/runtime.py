"""Embedded defaults for a run: where Prefect, MLflow and DVC keep their state, set only when asked.

Usage:
    configure(Path("."))     # before importing prefect: PREFECT_HOME etc. inside the work dir
    tracking(Path("."), "slmops")   # MLflow on SQLite + a local artifact folder, unless MLFLOW_TRACKING_URI is set

Nothing here runs at import time. Every default is ``setdefault``: a value already in the environment
(a real Prefect server's ``PREFECT_API_URL``, a shared ``MLFLOW_TRACKING_URI``) wins.
"""

from __future__ import annotations

import os
from pathlib import Path


def configure(work_dir: Path) -> None:
    work_dir = work_dir.resolve()
    defaults = {
        "PREFECT_HOME": str(work_dir / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "DVC_SITE_CACHE_DIR": str(work_dir / ".dvc-site-cache"),
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{work_dir / 'mlruns.db'}",
        "HF_HUB_OFFLINE": "1",  # never download weights or data at run time
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_DATASETS_CACHE": str(work_dir / ".cache" / "datasets"),
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect's SQLite needs the folder


def tracking(work_dir: Path, experiment: str) -> str:
    """Select (creating if needed) the experiment, with artifacts under ``<work_dir>/mlartifacts``."""
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        location = (work_dir.resolve() / "mlartifacts").as_uri()
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def flatten(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, name + ".")
        else:
            out[name] = value
    return out
