"""The stack's secrets, read only from the environment variables its config names (never from params, never
written to a log, an endpoints file or MLflow).

Usage:
    export SLMOPS_STACK_PG_PASSWORD=... SLMOPS_STACK_S3_ACCESS_KEY=... SLMOPS_STACK_S3_SECRET_KEY=...
    secrets = Secrets.from_env(params.stack)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from slmops.config.stack import StackConfig
from slmops.stack.procs import StackError


@dataclass(frozen=True)
class Secrets:
    pg_password: str = field(repr=False)
    s3_access_key: str = field(repr=False)
    s3_secret_key: str = field(repr=False)

    @classmethod
    def from_env(cls, cfg: StackConfig) -> Secrets:
        names = (cfg.postgres.password_env, cfg.object_store.access_key_env, cfg.object_store.secret_key_env)
        missing = [name for name in names if not os.environ.get(name)]
        if missing:
            raise StackError(
                f"{', '.join(missing)} not set: the stack's secrets come only from the environment "
                f"(e.g. export {missing[0]}=$(openssl rand -hex 16)); the names are set in slmops.yaml `stack:`"
            )
        return cls(*(os.environ[name] for name in names))

    def s3_env(self) -> dict[str, str]:
        """What an S3 client (boto3 in the MLflow server, DVC, SeaweedFS itself) reads its keys from."""
        return {"AWS_ACCESS_KEY_ID": self.s3_access_key, "AWS_SECRET_ACCESS_KEY": self.s3_secret_key}

    def pg_env(self) -> dict[str, str]:
        """libpq (psycopg2) and asyncpg read the password from ``PGPASSWORD``: no password in a URL or a ps line."""
        return {"PGPASSWORD": self.pg_password}
