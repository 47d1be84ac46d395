"""Screenshots of the team's stack as a user sees it: a real browser (headless Chromium) on the MLflow and
Prefect servers that `slmops stack up` started.

Usage (in a project whose stack is up, after `slmops run` and one retrain with a challenge, e.g. `slmops loop demo`):
    python docs/screenshots.py --project PATH [--out docs/screenshots]

Writes:
    mlflow-compare.png          the pipeline's run against the retrain's run in MLflow's Compare view
    mlflow-per-example.png      the challenge's per-example table (champion vs challenger on the same rows)
    mlflow-*-recent-confusion-*.png  confusion matrices on the recent-traffic rows: the champion's (challenge/)
                                and the challenger's forms (eval/), in MLflow's artifact viewer
    prefect-weekly-retrain.png  the newest scheduled retrain flow run in the Prefect UI, with its stages
    prefect-drift-retrain.png   the newest drift-started retrain flow run
    prefect-*-pipeline.png      each one's pipeline subflow run: a task run per stage
Chromium must be installed (Debian: `apt-get install chromium fonts-ipafont-gothic`, the font for Japanese).
Only URLs reach the browser: when the stack has MLflow basic auth or a Prefect auth string on, take the
screenshots on a stack without (auth is optional).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote


def shoot(url: str, path: Path, size: str = "1600,1000", wait_ms: int = 25000) -> None:
    """One page, rendered after ``wait_ms`` of virtual time (the UIs fetch their data after load)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={size}"]
    args += [f"--virtual-time-budget={wait_ms}", f"--screenshot={path}", url]
    subprocess.run(args, check=True, capture_output=True, timeout=180)
    print(f"{path}  <- {url}")


def pngs(client, run_id: str, path: str | None = None) -> list[str]:
    """Every PNG artifact of a run, walking its folders."""
    found = []
    for item in client.list_artifacts(run_id, path):
        found += pngs(client, run_id, item.path) if item.is_dir else [item.path] * item.path.endswith(".png")
    return found


def mlflow_pages(mlflow_url: str) -> dict[str, str]:
    """Page name -> URL: Compare (pipeline run vs newest retrain run that challenged), the per-example table, and
    the confusion matrices on the recent-traffic rows (the champion's from the challenge, the challenger's from
    its evaluation)."""
    import mlflow

    mlflow.set_tracking_uri(mlflow_url)
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list", order_by=["start_time DESC"])
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    pipeline = next(r for r in top if r.info.run_name.startswith("pipeline-"))
    retrain = next(r for r in top if r.info.run_name.startswith("retrain-") and r.data.tags.get("challenger"))
    ids, experiments = [pipeline.info.run_id, retrain.info.run_id], sorted({pipeline.info.experiment_id})
    base = f"{mlflow_url}/#"
    run_page = f"{base}/experiments/{retrain.info.experiment_id}/runs/{retrain.info.run_id}/artifactPath/"
    pages = {"mlflow-compare": f"{base}/compare-runs?runs={quote(json.dumps(ids))}"}
    pages["mlflow-compare"] += f"&experiments={quote(json.dumps(experiments))}"
    pages["mlflow-per-example"] = run_page + "challenge/per_example.json"
    for path in pngs(client, retrain.info.run_id):
        if "/recent/" in path and "confusion" in path:
            pages["mlflow-" + path.removesuffix(".png").replace("/", "-").replace("_", "-")] = run_page + path
    return pages


def prefect_pages(api_url: str) -> dict[str, str]:
    """The newest COMPLETED run of each retrain deployment (the weekly schedule's, the drift trigger's)."""
    import httpx

    body = {"sort": "START_TIME_DESC", "limit": 50, "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
    runs = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=30).json()
    deployments = {d["id"]: d["name"] for d in httpx.post(f"{api_url}/deployments/filter", json={}, timeout=30).json()}
    pages = {}
    for run in runs:
        name = deployments.get(run.get("deployment_id"))
        if name in ("weekly-retrain", "drift-retrain") and f"prefect-{name}" not in pages:
            pages[f"prefect-{name}"] = f"{api_url.removesuffix('/api')}/runs/flow-run/{run['id']}"
            child = {"flow_runs": {"parent_flow_run_id": {"any_": [run["id"]]}}}
            for sub in httpx.post(f"{api_url}/flow_runs/filter", json=child, timeout=30).json():  # its stages
                pages[f"prefect-{name}-pipeline"] = f"{api_url.removesuffix('/api')}/runs/flow-run/{sub['id']}"
    return pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True, help="the project whose stack is up")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "screenshots")
    args = parser.parse_args()
    endpoints = json.loads((args.project / ".slmops/stack/endpoints.json").read_text(encoding="utf-8"))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, url in mlflow_pages(endpoints["mlflow"]).items():  # Compare: tall enough for the metrics table
        shoot(url, args.out / f"{name}.png", size="1600,2600" if name == "mlflow-compare" else "1600,1000")
    for name, url in prefect_pages(endpoints["prefect_api"]).items():
        shoot(url, args.out / f"{name}.png", size="1600,1200")


if __name__ == "__main__":
    main()
