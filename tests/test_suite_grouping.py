"""`make test` keeps each shared pipeline's tests, and each module's, on one pytest-xdist worker (tests/conftest.py
marks them with `xdist_group`). If the marks stop reaching xdist's scheduler (pytest 9 with pytest-xdist 3.8.0
did), every worker builds every pipeline and module fixture again: the suite ran ~290 s longer that way."""

from __future__ import annotations

import pytest


def test_the_xdist_group_marks_reach_the_scheduler(request):
    if not request.config.getoption("loadgroup", default=False):
        pytest.skip("not under pytest-xdist --dist loadgroup")
    group = request.node.get_closest_marker("xdist_group").args[0]
    assert request.node.nodeid.endswith(f"@{group}"), request.node.nodeid  # the id xdist schedules by


def test_the_long_groups_are_scheduled_first(request):
    """The groups that take longest start before the quick ones, so no worker begins the stack's ~12 minutes after
    the others have run out of work (xdist's own order, most tests first, started it ninth)."""
    from tests.conftest import LONG_GROUPS

    groups = list(dict.fromkeys(item.get_closest_marker("xdist_group").args[0] for item in request.session.items))
    present = [group for group in LONG_GROUPS if group in groups]
    assert groups[: len(present)] == present, groups[:8]
    if request.config.getoption("loadgroup", default=False):  # xdist would otherwise reorder them by size
        assert request.config.getoption("loadscopereorder") is False
