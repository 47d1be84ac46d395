"""Embedded defaults for a run: where Prefect, MLflow and DVC keep their state, quiet consoles, a full log file.

Usage:
    configure(Path("."), offline=True)   # before importing prefect: PREFECT_HOME etc. inside the work dir
    log_file = quiet_console(Path("."))  # library chatter and warnings to logs/slmops.log, not the terminal
    tracking(Path("."), "slmops")        # MLflow on SQLite + a local artifact folder, unless MLFLOW_TRACKING_URI is set
                                         # (a tracking server keeps artifacts where it is configured to)

Nothing here runs at import time. Every default is ``setdefault``: a value already in the environment
(a real Prefect server's ``PREFECT_API_URL``, a shared ``MLFLOW_TRACKING_URI``) wins.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from slmops.config.layout import Layout

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def configure(work_dir: Path, offline: bool = False) -> None:
    layout = Layout(root=work_dir.resolve())
    defaults = {
        "PREFECT_HOME": str(layout.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",  # Prefect's own chatter; stage lines are printed, not logged
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "DVC_SITE_CACHE_DIR": str(layout.dvc_site_cache),
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_TRACKING_URI": layout.mlflow_uri,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_DATASETS_CACHE": str(layout.hf_datasets_cache),
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_CONFIGURE_LOGGING": "false",  # its records go to the log file with everything else
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # a tracking server's "View run" lines, 2 per stage
    }
    if offline:  # params project.offline: never download weights or data at run time
        defaults |= dict.fromkeys(OFFLINE_VARS, "1")
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect's SQLite needs the folder


def quiet_console(work_dir: Path) -> Path:
    """Send library logs and Python warnings (TracerWarnings, deprecations) to ``logs/slmops.log``; keep the
    terminal for the stage lines and progress bars. Returns the log file (logged to MLflow by the flows)."""
    log_file = Layout(root=work_dir.resolve()).console_log
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").propagate = False
    logging.getLogger("py.warnings").addHandler(handler)
    for name in ("transformers", "datasets", "optimum", "trl", "peft", "mlflow", "alembic", "httpx", "onnxruntime"):
        lib = logging.getLogger(name)
        lib.handlers.clear()  # their own stderr handlers
        lib.propagate = True
        lib.setLevel(logging.INFO if name in ("transformers", "trl") else logging.WARNING)
    import optimum.utils.logging as optimum_logging
    import transformers

    for library_logging in (transformers.logging, optimum_logging):  # each keeps a stderr handler of its own
        library_logging.disable_default_handler()
        library_logging.enable_propagation()
    return log_file


def tracking(work_dir: Path, experiment: str) -> str:
    """Select (creating if needed) the experiment, with artifacts under ``<work_dir>/mlartifacts``."""
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        # A tracking server (the team's stack) decides where artifacts go (it proxies them to its store).
        server = os.environ["MLFLOW_TRACKING_URI"].startswith(("http://", "https://"))
        location = None if server else Layout(root=work_dir.resolve()).mlflow_artifacts.as_uri()
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    # Tell the UI this is model training, so the experiment opens on its runs, not on an empty GenAI overview.
    mlflow.MlflowClient().set_experiment_tag(experiment_id, "mlflow.experimentKind", "custom_model_development")
    return experiment_id
