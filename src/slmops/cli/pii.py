"""PII commands: ``slmops pii mask`` and ``slmops pii scan``, with the project's ``pii`` params."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from slmops.cli.common import Profile, pii_app


def pii_config(profile: str | None):
    """The project's ``pii`` params; outside a project, the code defaults (every entity type)."""
    from slmops.config import ParamsError, PIIConfig, load_params
    from slmops.config.project import ProjectNotFound, find_project

    try:
        root = find_project()
    except ProjectNotFound:
        return PIIConfig()
    try:
        return load_params(profile, project=root).pii
    except ParamsError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None


@pii_app.command("mask")
def pii_mask(profile: Profile = None) -> None:
    """Read text lines on stdin, write them masked (NFKC + typed placeholders such as [NAME], [PHONE]) to stdout."""
    from slmops.text.pii import mask

    cfg = pii_config(profile)
    for line in sys.stdin:
        sys.stdout.write(mask(line.rstrip("\n"), cfg=cfg) + "\n")


@pii_app.command("scan")
def pii_scan(
    files: Annotated[list[Path], typer.Argument(help="JSONL, CSV/TSV or plain-text files.")],
    profile: Profile = None,
) -> None:
    """Report suspected PII as file:line: TYPE (field), never the value. Exit 1 if any is found, 2 on a bad file."""
    from slmops.text.pii.scan import scan_file

    cfg = pii_config(profile)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        typer.echo(f"not a readable file: {', '.join(missing)}", err=True)
        raise typer.Exit(2)
    counts: Counter[str] = Counter()
    for path in files:
        for finding in scan_file(path, cfg):
            typer.echo(str(finding))
            counts[finding.label] += 1
    summary = ", ".join(f"{label} {n}" for label, n in counts.most_common()) or "nothing"
    typer.echo(f"suspected PII in {len(files)} file(s): {summary}", err=True)
    if counts:
        raise typer.Exit(1)
