"""Typed params, the project's files and the one ``Layout`` of every path."""

from slmops.config.params import *  # noqa: F403
