"""``python -m slmops.cli``: the same command as ``slmops``."""

from slmops.cli import app

app()
