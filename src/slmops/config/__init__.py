"""Typed params by concern, the project's files and the one ``Layout`` of every path.

Usage:
    from slmops.config import load_params, Layout
    params = load_params("smoke")          # in a project: slmops.yaml + profiles/smoke.yaml
"""

from slmops.config.base import *  # noqa: F403
from slmops.config.data import *  # noqa: F403
from slmops.config.gates import *  # noqa: F403
from slmops.config.layout import *  # noqa: F403
from slmops.config.loop import *  # noqa: F403
from slmops.config.params import *  # noqa: F403
from slmops.config.serve import *  # noqa: F403
from slmops.config.stack import *  # noqa: F403
from slmops.config.teacher import *  # noqa: F403
from slmops.config.train import *  # noqa: F403
