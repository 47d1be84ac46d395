"""``POST /admin/reload``: switch to the alias's current holder now (the poller would within
``serve.reload_interval_s``). Needs an admin key (see ``keys.py``); each call is logged with who asked (a
key id, never the key) and what changed.

Usage:
    curl -X POST -H "Authorization: Bearer $SLMOPS_ADMIN_KEY" 127.0.0.1:8000/admin/reload
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from slmops.serve.reload import ReloadError
from slmops.serve.schemas import error
from slmops.serve.state import ServerState, get_state

router = APIRouter()
log = logging.getLogger(__name__)


@router.post("/admin/reload", response_model=None)
def reload(request: Request, state: ServerState = Depends(get_state)) -> dict | JSONResponse:
    caller = getattr(request.state, "caller", "unknown")
    try:
        outcome = state.holder.reload()
    except ReloadError as err:
        log.warning("admin reload by %s failed: %s", caller, err)
        return error(409, str(err), "reload_error")
    log.warning(
        "admin reload by %s: %s (version %s, was %s)",
        caller,
        "changed" if outcome["changed"] else "unchanged",
        outcome["version"],
        outcome["previous"],
    )
    return outcome
