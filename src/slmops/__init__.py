"""slmops components: the pipeline's logic as plain, typed Python functions (no Prefect, no global state)."""
