"""Scheduled runs: weekly retraining and hourly monitoring as Prefect deployments, plus the unscheduled
``drift-retrain`` deployment that the monitor starts when its trigger fires.

Usage (needs a running server: ``prefect server start`` and ``PREFECT_API_URL=http://127.0.0.1:4200/api``):
    slmops schedule --profile demo      # embedded: served from this process until Ctrl-C
    slmops schedule --profile demo      # in a project with a `stack:` section: deployed to the stack's work pool

On the stack the deployments name their flows by module path (``slmops.flows.loop.retrain``): a worker of the
process pool imports them from the installed package, so nothing is uploaded and no process of ours has to stay
up; the command registers them and returns.
"""

from __future__ import annotations

import os
from typing import Any


def build_deployments(profile: str | None, work_dir: str, retrain_cron: str, monitor_cron: str, **options: Any) -> list:
    """The three deployments; ``options`` go to each ``to_deployment`` (a work pool's ``entrypoint_type``,
    ``job_variables``)."""
    from slmops.flows.loop import retrain
    from slmops.flows.monitor import monitor_flow

    where = {"profile": profile, "work_dir": work_dir}
    return [
        retrain.to_deployment(
            name="weekly-retrain", cron=retrain_cron, parameters=where | {"reason": "scheduled"}, **options
        ),
        retrain.to_deployment(name="drift-retrain", parameters=where | {"reason": "drift"}, **options),
        monitor_flow.to_deployment(name="hourly-monitor", cron=monitor_cron, parameters=where, **options),
    ]


def deploy_to_pool(
    profile: str | None, work_dir: str, retrain_cron: str, monitor_cron: str, work_pool: str
) -> dict[str, str]:
    """Register the deployments on the server with ``work_pool``'s workers to run them; ``{name: id}``.

    The flows are named by module path, so a process worker runs them from the installed slmops (no image, no
    uploaded code), in ``work_dir``."""
    from prefect.deployments.runner import EntrypointType

    found = build_deployments(
        profile, work_dir, retrain_cron, monitor_cron,
        entrypoint_type=EntrypointType.MODULE_PATH, job_variables={"working_dir": work_dir},
    )  # fmt: skip
    # Each one's own `apply`: prefect 3.8.8's `prefect.deploy` fails before it deploys anything (its sync client
    # lists the pool's workers with limit=None, which the server answers with HTTP 422).
    return {f"{d.flow_name}/{d.name}": str(d.apply(work_pool_name=work_pool)) for d in found}


def serve_deployments(profile: str | None, work_dir: str, retrain_cron: str, monitor_cron: str) -> None:
    """Register both deployments and run them on schedule in this process (Ctrl-C stops)."""
    if not os.environ.get("PREFECT_API_URL"):
        raise SystemExit(
            "slmops schedule needs a Prefect server: run `prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    from prefect import serve

    serve(*build_deployments(profile, work_dir, retrain_cron, monitor_cron))
