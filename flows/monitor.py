"""Monitor flow: drift report on the inference log, logged to MLflow; drift starts the retraining flow.

Usage:
    slmops monitor --profile demo
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from components.config import Layout, load_params
from flows.runtime import tracking


@task(name="drift-report")
def drift_report(profile: str, layout: Layout) -> dict[str, Any]:
    import mlflow

    from components import monitor
    from components.tasks import load_task

    params = load_params(profile)
    reference = layout.synthetic / "train.jsonl"
    if not reference.exists():
        reference = layout.prepared / "train.jsonl"
    result = monitor.run(
        params.monitor,
        task=load_task(params.task, layout.root),
        reference=reference,
        log=layout.inference_log,
        out_dir=layout.reports / "monitor",
    )
    with mlflow.start_run(run_name="monitor"):
        mlflow.set_tag("drift_detected", str(result.drift_detected).lower())
        mlflow.log_metrics({"drift_share": result.drift_share, "rows_current": result.rows_current})
        mlflow.log_artifact(str(layout.reports / "monitor" / "drift.json"))
        if result.report_html is not None:
            mlflow.log_artifact(str(result.report_html))
    return result.model_dump(mode="json")


@flow(name="slmops-monitor", log_prints=True)
def monitor_flow(profile: str = "demo", work_dir: str = ".", retrain: bool = True) -> dict[str, Any]:
    params = load_params(profile)
    layout = Layout(root=Path(work_dir).resolve())
    tracking(layout.root, params.project.experiment + "-monitor")
    result = drift_report(profile, layout)
    if result["drift_detected"] and retrain and params.monitor.retrain_on_drift:
        from flows.pipeline import pipeline

        print(f"drift in {result['drifted_columns']}: starting the retraining flow")
        result["retrain"] = pipeline(profile=profile, work_dir=work_dir)["run_id"]
    return result
