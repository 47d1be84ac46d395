"""``GET /health`` (open, no key) and ``GET /metrics`` (Prometheus text).

Usage:
    curl 127.0.0.1:8000/health ; curl -H "Authorization: Bearer $KEY" 127.0.0.1:8000/metrics
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from slmops.serve.state import ServerState, get_state

router = APIRouter()


@router.get("/health")
def health(state: ServerState = Depends(get_state)) -> dict:
    served = state.holder.current
    return {
        "status": "ok",
        "model": state.model_name,
        "version": served.version,
        "backend": served.model.backend,
        "loaded_at": state.holder.loaded_at,
        "reload_error": state.holder.last_error,
        "fallback": state.fallback is not None,
    }


@router.get("/metrics")
def prometheus(state: ServerState = Depends(get_state)) -> Response:
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
