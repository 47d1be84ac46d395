"""The team's stack on one host's loopback: PostgreSQL, an S3 object store (SeaweedFS), the MLflow tracking
server and the Prefect server with a process work pool and workers, all from packages, no containers.

Usage (in a project whose slmops.yaml has a `stack:` section):
    slmops stack up && slmops stack status && slmops run && slmops stack down

``control`` starts and stops the parts; ``endpoints`` is the one file the other commands read.
"""
