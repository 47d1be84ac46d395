"""The ``slmops`` command. Every subcommand has ``--help``; heavy libraries load only when a command runs.

Usage:
    slmops demo build --profile demo && slmops run --profile demo
    slmops params --profile demo            # the resolved params; --schema for the JSON schema
    slmops stage finetune --profile demo    # one stage (what dvc.yaml runs)
    slmops stage finetune --processes 2     # finetune in 2 processes (accelerate launch: DDP, FSDP if full)
    slmops evaluate --model prod --data data/prepared/test.jsonl
    slmops promote --to pilot && slmops promote --to prod
    slmops serve --alias prod --port 8000
    slmops monitor
    echo "電話は090-1234-5678" | slmops pii mask
    slmops pii scan data/raw/*.jsonl
"""

from __future__ import annotations

# isort: off
# Each module registers its commands on ``app``; --help lists them in this order.
from slmops.cli import project, models, loop, pii  # noqa: F401

# isort: on
from slmops.cli.common import app

__all__ = ["app"]
