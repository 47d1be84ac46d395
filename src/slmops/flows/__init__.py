"""Prefect flows and the ``slmops`` CLI: wiring only, the logic lives in ``components``."""
