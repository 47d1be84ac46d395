"""The example projects as the package ships them: tests read their specs, gates and profiles in place."""

from slmops.config.project import example_dir

TRIAGE = example_dir("ticket_triage")
REVIEWS = example_dir("review_insights")
TRIAGE_GATES = TRIAGE / "tasks" / "ticket_triage.gates.yaml"
REVIEWS_GATES = REVIEWS / "tasks" / "review_insights.gates.yaml"
REVIEWS_SMOKE_GATES = REVIEWS / "tasks" / "review_insights.smoke.gates.yaml"  # what the smoke profile names
