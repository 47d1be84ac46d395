"""Tasks: each defines its output schema, chat prompt, output parser and metrics.

A pipeline names its task in params; ``get_task`` returns the module. The demo task is ``ticket_triage``.
"""

from __future__ import annotations

from types import ModuleType


def get_task(name: str = "ticket_triage") -> ModuleType:
    if name == "ticket_triage":
        from components.tasks import ticket_triage

        return ticket_triage
    raise ValueError(f"unknown task {name!r}; known: ticket_triage")
