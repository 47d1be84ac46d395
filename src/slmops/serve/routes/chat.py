"""``POST /v1/chat/completions`` (also ``stream: true``), OpenAI's format.

Usage:
    openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=KEY).chat.completions.create(model=..., messages=...)

A request is checked before anything is generated: unsupported fields (400 naming the field), unknown model
(404), a budget over ``serve.max_tokens_cap`` or over the context window (400), too many in flight (429).
Greedy requests without ``stop``/``logprobs`` differences are batched (``batcher.py``); the teacher fallback
may replace a non-streamed answer (``fallback.py``).

``response_format`` ``json_object``/``json_schema``: the answer is checked after generation (no constrained
decoding: the student is fine-tuned to the task's schema); a complete answer that does not parse, or does not
match the schema, gets 422 ``invalid_output_error`` naming the first violation, instead of an answer the
client would trust. An answer cut by the budget (``finish_reason`` "length") is sent as it is.

A generation stopped by ``serve.generation_timeout_s`` gets 504 (not streamed) or ends the stream with
``finish_reason`` "length" (streamed: the bytes are already sent); both count ``errors{kind="timeout"}`` and
are logged with status 504.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse

from slmops.inference.chat_model import Completion, ContextWindowExceeded, EngineError
from slmops.serve.inference_log import log_row
from slmops.serve.reload import ServedModel
from slmops.serve.schemas import ChatRequest, ResponseFormat, error
from slmops.serve.state import ServerState, as_trained, get_state

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
def chat_completions(req: ChatRequest, state: ServerState = Depends(get_state)):
    refusal = _refusal(req, state)
    if refusal is not None:
        return refusal
    if not state.slots.acquire(blocking=False):
        state.metrics.error("overloaded")
        limit = state.cfg.max_in_flight
        return error(429, f"more than {limit} requests in flight", "rate_limit_error", headers={"Retry-After": "1"})
    served = state.pick(req.model)  # this request uses this model to the end, even if a reload swaps it meanwhile
    messages = as_trained([m.as_dict() for m in req.messages], state)
    # Not given: as many tokens as the cap and the context window leave (OpenAI's default), at least 1, so a
    # prompt that fills the window still gets its 400.
    budget = req.budget or max(1, min(state.cfg.max_tokens_cap, served.model.room_for(messages)))
    if req.stream:
        return _stream(req, state, served, messages, budget)
    try:
        return _answer(req, state, served, messages, budget)
    finally:
        state.slots.release()


def _refusal(req: ChatRequest, state: ServerState) -> JSONResponse | None:
    unsupported = req.unsupported()
    if unsupported is not None:
        state.metrics.error("unsupported")
        return error(400, unsupported[1], param=unsupported[0])
    if req.model not in state.served_names():
        state.metrics.error("unknown_model")
        served = ", ".join(repr(name) for name in state.served_names())
        return error(404, f"model {req.model!r} not found; this server serves {served}", "not_found_error")
    if req.budget is not None and req.budget > state.cfg.max_tokens_cap:
        state.metrics.error("invalid_request")
        param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        return error(400, f"{param} {req.budget} exceeds this server's cap of {state.cfg.max_tokens_cap}", param=param)
    return None


def _answer(req: ChatRequest, state: ServerState, served: ServedModel, messages: list[dict], budget: int):
    started, request_id = time.perf_counter(), f"chatcmpl-{uuid.uuid4().hex[:24]}"
    served_by, reason = "student", None
    fallback = state.fallback
    try:
        completion = state.batcher.generate(
            served.model,
            messages,
            budget,
            temperature=req.temperature,
            top_p=req.top_p,
            seed=req.seed,
            max_time=state.cfg.generation_timeout_s,
            scores=fallback is not None and fallback.needs_scores,
            stop=req.stops or None,
            logprobs=(req.top_logprobs or 0) if req.logprobs else None,
        )
    except ContextWindowExceeded as err:
        state.metrics.error("context_window")
        return error(400, str(err), param="messages")
    except EngineError as err:  # an external engine's refusal (its 4xx) or failure (502)
        state.metrics.error("engine")
        return error(err.status, str(err), param=err.param)
    confidence = completion.min_token_prob  # the student's, kept when the teacher's answer replaces it
    if not completion.timed_out and fallback is not None:
        reason = fallback.reason(completion)
        if reason is not None:
            state.metrics.fell_back(reason)
            answer = fallback.answer(messages, req.budget)
            if answer is None:
                state.metrics.error("fallback_failed")  # the student's answer is sent after all
            else:
                completion, served_by = answer, "teacher"
    fields = {"model_version": served.version, "served_by": served_by, "fallback": reason}
    if confidence is not None:  # the monitor's confidence signal and the harvest's low_confidence read it
        fields["min_token_prob"] = round(confidence, 6)
    latency_s = time.perf_counter() - started
    if completion.timed_out:
        _record(state, req.model, request_id, messages, completion, latency_s, **fields)
        state.metrics.error("timeout")
        return error(504, f"generation took longer than {state.cfg.generation_timeout_s} s", "timeout_error")
    # A cut answer ("length") is sent as it is: the client sees why it may be incomplete, as with OpenAI.
    violation = (
        None if completion.finish_reason == "length" else _format_violation(completion.text, req.response_format)
    )
    if violation is not None:
        _record(state, req.model, request_id, messages, completion, latency_s, status=422, **fields)
        state.metrics.error("invalid_output")
        return error(
            422,
            f"the answer does not match response_format: {violation}",
            "invalid_output_error",
            param="response_format",
        )
    _record(state, req.model, request_id, messages, completion, latency_s, **fields)
    headers = {"x-slmops-served-by": served_by} | _version_header(served)
    return JSONResponse(_body(request_id, req.model, completion, req.logprobs), headers=headers)


def _body(request_id: str, model_name: str, completion: Completion, logprobs: bool) -> dict:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": completion.text},
        "logprobs": {"content": completion.logprobs or []} if logprobs else None,
        "finish_reason": completion.finish_reason,
    }
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [choice],
        "usage": _usage(completion),
    }


def _usage(completion: Completion) -> dict:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }


def _format_violation(text: str, response_format: ResponseFormat | None) -> str | None:
    """Why ``text`` is not what ``response_format`` asked for, or None."""
    if response_format is None or response_format.type == "text":
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return f"not JSON ({err.msg} at character {err.pos})"
    if response_format.type == "json_object":
        return None if isinstance(value, dict) else "not a JSON object"
    import jsonschema

    schema = response_format.json_schema.schema_  # type: ignore[union-attr]
    problem = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if problem is None:
        return None
    where = "/".join(str(p) for p in problem.absolute_path) or "(root)"
    return f"{where}: {problem.message}"


def _version_header(served: ServedModel) -> dict:
    return {"x-slmops-model-version": str(served.version)} if served.version is not None else {}


def _record(state: ServerState, model: str, request_id: str, messages, completion: Completion, latency_s, **fields):
    state.metrics.answered(completion, latency_s)
    if state.log is not None:
        row = log_row(request_id, model, messages, completion, latency_s, state.log.pii_cfg, **fields)
        state.log.append(row)


def _stream(req: ChatRequest, state: ServerState, served: ServedModel, messages: list[dict], budget: int):
    request_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    try:
        pieces = state.batcher.stream(  # continuous: the stream's row joins the running decode batch
            served.model,
            messages,
            budget,
            temperature=req.temperature,
            top_p=req.top_p,
            max_time=state.cfg.generation_timeout_s,
            seed=req.seed,
            stop=req.stops or None,
        )
        first = next(pieces)  # raises ContextWindowExceeded before any byte is sent
    except ContextWindowExceeded as err:
        state.slots.release()
        state.metrics.error("context_window")
        return error(400, str(err), param="messages")
    except EngineError as err:
        state.slots.release()
        state.metrics.error("engine")
        return error(err.status, str(err), param=err.param)

    def on_done(completion: Completion, latency_s: float) -> None:
        if completion.timed_out:
            state.metrics.error("timeout")
        version = served.version
        _record(state, req.model, request_id, messages, completion, latency_s, stream=True, model_version=version)

    include_usage = req.stream_options is not None and req.stream_options.include_usage
    events = _sse(request_id, req.model, _chain(first, pieces), include_usage, on_done)
    return StreamingResponse(_released(events, state), media_type="text/event-stream", headers=_version_header(served))


def _sse(request_id: str, model_name: str, pieces, include_usage: bool, on_done) -> Iterator[str]:
    """Server-sent events in OpenAI's ``chat.completion.chunk`` format, ending with ``data: [DONE]``. With
    ``include_usage``, every chunk carries ``usage: null`` and a last chunk with no choices carries it."""
    started = time.perf_counter()

    def chunk(choices: list, **extra) -> str:
        body = {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model_name,
            "choices": choices,
            **({"usage": None} if include_usage else {}),
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def delta(content: dict, finish_reason: str | None = None) -> list:
        return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish_reason}]

    yield chunk(delta({"role": "assistant", "content": ""}))
    for piece in pieces:
        if isinstance(piece, Completion):
            on_done(piece, time.perf_counter() - started)
            yield chunk(delta({}, piece.finish_reason))
            if include_usage:
                yield chunk([], usage=_usage(piece))
        else:
            yield chunk(delta({"content": piece}))
    yield "data: [DONE]\n\n"


def _released(events: Iterator[str], state: ServerState) -> Iterator[str]:
    try:
        yield from events
    finally:
        state.slots.release()


def _chain(first, rest):
    yield first
    yield from rest
