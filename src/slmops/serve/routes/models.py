"""``GET /v1/models``: the model this server serves, then each LoRA adapter served under its own name.

Usage:
    openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=KEY).models.list()
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from slmops.serve.state import ServerState, get_state

router = APIRouter()


@router.get("/v1/models")
def models(state: ServerState = Depends(get_state)) -> dict:
    names = state.served_names()
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "slmops"} for name in names]}
